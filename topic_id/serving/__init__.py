"""Serving trained systems: export a run as a model folder, classify new recordings, batch prediction."""
