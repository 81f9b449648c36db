"""Expression coefficients (DeepExp3D), the 3D morphable model, per-track calibration, action units, 3D face motion."""
