"""ROS-free library, one sub-package per stage of the graph:

- frontend/: detection, 68 landmarks, tracking, registration to the template, head pose
- expression/: the DeepExp3D regressor, the 3D morphable model and its fitting, per-track
  calibration, action units, 3D face motion
- affect/: emotion and stress from the coefficients
- inference/: ONNX Runtime and TensorRT backends, the engine cache and builder
and what they share: files.py (shipped files), image_conversion.py, video.py, threads.py,
track_states.py (state kept per track), settings.py (every stage's settings), drawing.py.
"""
