"""What a handler raises when trying again cannot help."""

from __future__ import annotations

__all__ = ["PermanentFailure"]


class PermanentFailure(Exception):
    """Raise it (or a subclass) from ``run_handler`` when the failure will not go away by
    itself: the attempt fails as any other, and the run is ``dead`` at once instead of
    being retried (its error says so). An operator can still replay it after fixing the
    cause.

    Example::

        if response.status_code == 410:
            raise PermanentFailure(f"{url} answered 410 Gone: the receiver was removed")

    Any other exception, a return value other than ``True`` or a timeout is retried
    per the registration's ``max_attempts`` and ``backoff``.
    """
