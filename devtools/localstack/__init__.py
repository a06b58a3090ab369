"""The local stack behind `make run` and the integration tests: real processes on loopback."""
