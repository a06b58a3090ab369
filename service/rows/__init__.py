"""Rows: the input schema a model declares and the canonical form of request rows.

A leaf package: it imports nothing of the service but its error classes, so that models,
caches and protocols can all build on it.
"""
