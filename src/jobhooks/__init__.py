"""jobhooks: run Python handlers after certificate-orchestrator jobs complete.

The handler SDK is this module's ``__all__``.
"""

from jobhooks.sdk.context import JobCompleteContext
from jobhooks.sdk.enums import JobResult, OperationType
from jobhooks.sdk.failure import PermanentFailure
from jobhooks.sdk.handler import JobCompleteHandler
from jobhooks.sdk.secret import Secret

__all__ = [
    "JobCompleteContext",
    "JobCompleteHandler",
    "JobResult",
    "OperationType",
    "PermanentFailure",
    "Secret",
    "__version__",
]

__version__ = "0.1.0"
