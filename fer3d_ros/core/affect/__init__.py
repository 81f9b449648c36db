"""Emotion and stress from expression coefficients."""
