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
        fields = {"handler": self.name, **context.to_dict()}
        line = json.dumps(fields, ensure_ascii=False)
        # json_fields: with --log-format json the fields are the log line's own keys.
        level = logging.getLevelNamesMapping()[self.level.upper()]
        logger.log(level, "%s", line, extra={"json_fields": fields})
        return True
