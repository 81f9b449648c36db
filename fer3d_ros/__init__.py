# Kept trivial: the installed package's __init__.py belongs to the message generator. In a
# source checkout, merge this folder with the installed one so that `fer3d_ros.msg` (generated
# into the venv) and the sources here form one package.
__path__ = __import__('pkgutil').extend_path(__path__, __name__)
