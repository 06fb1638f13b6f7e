"""Alembic migration scripts for the artifact index (applied by ``index.ensure_schema``)."""
