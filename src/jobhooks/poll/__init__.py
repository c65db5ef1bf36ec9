"""Pull mode: follow a platform instance's job history and turn finished runs into completions."""

from jobhooks.poll.poller import Poller, PollerMetrics

__all__ = ["Poller", "PollerMetrics"]
