"""Duet: the generated gRPC contract (duet.v1) and the project's packages (routing, edge, services)."""
