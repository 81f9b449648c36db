"""Detect, find 68 landmarks, track, register each face to the template, head pose."""
