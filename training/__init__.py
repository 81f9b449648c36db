"""Offline training package: model conversion, 3DMM video fitting, regressor and classifier training.

Needs the [train] extras (PyTorch, onnx); nothing here is imported by the nodes.

Its tools limit NumPy's and SciPy's BLAS pools to one thread, as the nodes do (core.threads): the
fits and calibrations they run are the nodes' small problems, four to thirty times slower with a
pool per core. PyTorch's own threads are not touched (torch.set_num_threads).
"""
from fer3d_ros.core.threads import limit_library_threads

limit_library_threads(1)
