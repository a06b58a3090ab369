"""The image suite (see conftest.py)."""
