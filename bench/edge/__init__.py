"""make bench-edge: the edge's CPU per forwarded packet against a bare Python forwarding loop."""
