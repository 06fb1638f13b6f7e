"""The alembic revision the code expects, importable without SQLAlchemy.

Kept apart from :mod:`artifact_store.index` so that the store's sqlite3 fast path can check
the stamped revision without importing SQLAlchemy (~0.2 s of a CLI cache hit).
"""

# Must equal alembic's head; tests/artifact_store/test_index.py checks it. Bump together with
# every new migration script.
HEAD_REVISION = "0005_action_results"
