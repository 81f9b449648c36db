"""Inference backends (ONNX Runtime, TensorRT), the engine cache and the engine builder."""
