"""Time-ordered ids (UUID version 7), made by any node without coordination."""

from __future__ import annotations

import os
import threading
import time
import uuid

__all__ = ["new_id"]

_lock = threading.Lock()
_last = 0


def new_id() -> str:
    """A UUIDv7 string: sorts by creation time, unique across processes and nodes."""
    global _last
    with _lock:
        millis = time.time_ns() // 1_000_000
        # Within one millisecond, keep ids increasing by stepping the random part.
        value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
        if value <= _last:
            value = _last + 1
        _last = value
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return str(uuid.UUID(int=value))
