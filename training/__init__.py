"""Offline training package: model conversion, 3DMM video fitting, regressor and classifier training.

Needs the [train] extras (PyTorch, onnx); nothing here is imported by the nodes.
"""
