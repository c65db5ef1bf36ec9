"""Retention: completions older than ``[server] retention_days`` are deleted hourly."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from jobhooks.errors import StoreError
from jobhooks.store import Store

__all__ = ["FIRST_AFTER", "RETENTION_EVERY", "keep_for"]

logger = logging.getLogger("jobhooks")

FIRST_AFTER = 60.0
"""Seconds after start before the first pass (a restart loop does not purge each time)."""
RETENTION_EVERY = 3600.0


async def keep_for(store: Store, days: Callable[[], int], clock: Callable[[], float]) -> None:
    """Delete, every hour until cancelled, the finished completions older than ``days()``
    (read each time: a reload may change it)."""
    await asyncio.sleep(FIRST_AFTER)
    while True:
        kept = days()
        cutoff = clock() - kept * 86400
        try:
            total = 0
            while (count := await store.purge(cutoff)) > 0:
                total += count
            if total:
                logger.info("retention: deleted %d completions older than %d days", total, kept)
        except StoreError as exc:
            # Already said in plain words (the store logs a failed write once).
            logger.warning("retention did not run: %s; trying again in an hour", exc)
        except Exception:
            logger.exception("retention failed; trying again in an hour")
        await asyncio.sleep(RETENTION_EVERY)
