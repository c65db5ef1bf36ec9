"""``log``: one structured log line per completion."""

from __future__ import annotations

import json
import logging
from typing import Literal

from jobhooks import JobCompleteContext, JobCompleteHandler

logger = logging.getLogger("jobhooks.handlers.log")


class LogHandler(JobCompleteHandler):
    """Write one JSON log line per completion (logger ``jobhooks.handlers.log``)."""

    level: Literal["debug", "info", "warning", "error"] = "info"

    def run_handler(self, context: JobCompleteContext) -> bool:
        line = json.dumps({"handler": self.name, **context.to_dict()}, ensure_ascii=False)
        logger.log(logging.getLevelNamesMapping()[self.level.upper()], line)
        return True
