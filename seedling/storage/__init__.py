"""History storage: SQLAlchemy models, versioned migrations, SQLite services and the image file store.

Layout follows InvokeAI's services: `*_base.py` is an interface, `*_common.py` its records,
`*_sqlite.py` the SQLite implementation. `backend/services.py` wires them together.
"""
