"""The store: completions, handler runs and tokens, on SQLite or PostgreSQL.

:class:`Store` is the one object the rest of jobhooks holds; each consumer
sees it through its narrow protocol in :mod:`jobhooks.store.ports`.
"""

from jobhooks.store.facade import Store

__all__ = ["Store"]
