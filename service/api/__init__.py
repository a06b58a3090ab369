"""HTTP routes: parse a protocol, call the DataPlane, answer."""
