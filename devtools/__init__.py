"""Development and test tooling (the local stack); not part of the served image."""
