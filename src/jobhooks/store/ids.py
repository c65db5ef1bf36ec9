"""Time-ordered ids (UUID version 7), made by any node without coordination."""

from __future__ import annotations

import functools
import random
import threading
import time

__all__ = ["guid_text", "new_id", "stored_id"]

_lock = threading.Lock()
_random = random.Random()
_last = 0
_VERSION = 0x7 << 76
_VARIANT = 0x2 << 62
_RANDOM_BITS = ((1 << 76) - 1) & ~(0x3 << 62)


def new_id() -> str:
    """A UUIDv7 string: sorts by creation time, unique across processes and nodes.

    Ids are not secrets (every endpoint that takes one needs a token), so the
    random part comes from a fast generator rather than the system's.
    """
    global _last
    millis = time.time_ns() // 1_000_000
    with _lock:
        value = (millis << 80) | _VERSION | _VARIANT | (_random.getrandbits(76) & _RANDOM_BITS)
        if value <= _last:
            # Several ids in one millisecond: keep them increasing.
            value = _last + 1
        _last = value
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def stored_id(text: str) -> str:
    """An id someone typed, as the store keeps ids: in lower case (a UUID in capitals, as
    Keyfactor Command writes GUIDs, names the same row)."""
    return text.lower()


@functools.lru_cache(maxsize=4096)
def guid_text(guid: object) -> str:
    """``str(guid)``, remembered: the same agents, job types and recurring jobs come back
    in every batch, and a UUID's text is worked out in Python each time."""
    return str(guid)


def id_floor(seconds: float) -> str:
    """The smallest id made at ``seconds`` since the epoch: ids compare as text, so
    ``id >= id_floor(t)`` selects what was made at or after ``t`` through the key."""
    millis = max(0, int(seconds * 1000))
    text = f"{(millis << 80) | _VERSION | _VARIANT:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
