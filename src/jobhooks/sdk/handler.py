"""The base class of every handler."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import ClassVar

from jobhooks.sdk.context import JobCompleteContext

__all__ = ["JobCompleteHandler"]


class JobCompleteHandler:
    """Code that runs after an orchestrator job completes.

    Subclass it, declare the handler's properties as annotated class
    attributes (with defaults where a property is optional) and implement
    :meth:`run_handler`, sync or ``async``. Return ``True`` when the handler
    did its work; returning anything else, raising or timing out is a failed
    attempt that jobhooks retries per the registration's delivery policy.

    Example::

        class Recorder(JobCompleteHandler):
            \"\"\"Append every failed job to a file.\"\"\"

            path: str
            only_failures: bool = True

            def run_handler(self, context: JobCompleteContext) -> bool:
                if self.only_failures and not context.failed:
                    return True
                with open(self.path, "a") as out:
                    out.write(context.to_json() + "\\n")
                return True

    jobhooks fills the properties from the registration, then calls
    :meth:`setup` once; ``name`` is the registration's name.
    """

    # Set on each instance at registration; ClassVar keeps it out of the properties.
    name: ClassVar[str]

    def setup(self) -> None:
        """Check or prepare the properties once at registration.

        Raise ``ValueError`` with a message to reject the registration; the
        message is reported with the handler's name.
        """

    def run_handler(self, context: JobCompleteContext) -> bool | Awaitable[bool]:
        """Handle one completed job; return True on success."""
        raise NotImplementedError(f"{type(self).__name__} does not implement run_handler")
