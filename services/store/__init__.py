"""Persistence: PostgreSQL through asyncpg (postgres.py) and versioned schema migrations (migrate.py)."""
