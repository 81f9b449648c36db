"""pip install of the ROS-free library and the training package, where no ROS build is wanted.

The ROS 2 package (messages, nodes, launch files) is built with colcon/CMake instead; see README.
`pip install .` does not install models/, config/ or launch/: use the ROS build for those.
"""
from setuptools import find_packages, setup

setup(
    name='fer3d_ros',
    version='0.1.0',
    description='3D expression-based facial expression recognition for robots (DeepExp3D)',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['fer3d_ros', 'fer3d_ros.*', 'training', 'training.*']),
    install_requires=[
        'numpy>=1.21',
        'opencv-python-headless>=4.5,<5',
        'scipy>=1.8',
        'scikit-learn>=1.0',
        'threadpoolctl>=3.1',
        'onnxruntime>=1.15',
        'rosbags>=0.9.15',
        'mcap>=1.1',
    ],
    extras_require={
        'train': ['torch>=2.1', 'onnx>=1.14', 'tqdm>=4.60', 'matplotlib>=3.5', 'optuna>=4', 'ai-edge-litert>=1.2'],
    },
)
