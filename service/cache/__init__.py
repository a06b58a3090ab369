"""Prediction caches: key building, the interface, Redis and in-process implementations."""
