"""ROS-free library: images, detection, landmarks, tracking, alignment, 3DMM, regression, emotion, stress."""
