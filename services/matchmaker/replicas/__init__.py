"""Matchmaker replicas on one PostgreSQL: shards, their ownership, and forwarding (docs/replicas.md)."""
