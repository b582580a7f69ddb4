"""The routing service: gRPC over the ``duet.routing`` library (server.py) and its live state (state.py)."""
