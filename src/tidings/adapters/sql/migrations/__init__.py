"""Alembic migration scripts for the SQL store (run by `tidings.adapters.sql.migrate`)."""
