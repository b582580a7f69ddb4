"""gRPC plumbing shared by every server: error mapping (errors.py), start and stop (server.py)."""
