"""The case store's schema migrations, as versioned SQL files shipped as package data.

``NNNN_name.sql`` serves both dialects; ``NNNN_name.sqlite.sql`` / ``NNNN_name.postgres.sql``
when their SQL differs. The runner is :mod:`acd.store.migrate`.
"""
