"""Benchmarks: measured runs of the real system (``make bench-edge``), never timed unit tests."""
