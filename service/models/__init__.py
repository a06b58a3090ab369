"""Model sources, the loaded-model wrapper and the manager that swaps versions."""
