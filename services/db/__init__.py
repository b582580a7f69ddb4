"""Persistence: PostgreSQL via asyncpg (store.py), schema migrations (migrate.py)
and a private local cluster for development and tests (embedded.py)."""
