"""Structured logs: one JSON object per line with the call id when there is one.

Every message passes the masking filter last, so even a careless log line that includes a
transcript cannot write a card number to disk.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable

from callcue.privacy.masking import mask_log_text

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
#: card numbers and long digit runs masked, diagnostics (addresses, ports, versions, digests,
#: ids) kept; `set_masker` exists for tests
_mask: Callable[[str], str] = mask_log_text


# credentials that can ride in a URL or a header (uvicorn logs every WebSocket handshake with
# its query string): replaced before any line is written, whatever logged it
_CREDENTIALS = re.compile(r"(?i)((?:[?&;]|\b)(?:token|access_token|api_key|apikey|auth|signature|secret)=)[^&\s\"']+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")


def scrub_credentials(text: str) -> str:
    return _BEARER.sub(r"\1[redacted]", _CREDENTIALS.sub(r"\1[redacted]", text))


def _clean(text: str) -> str:
    return scrub_credentials(_mask(text))


def set_masker(fn: Callable[[str], str]) -> None:
    global _mask
    _mask = fn


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": _clean(record.getMessage()),
        }
        for k, v in vars(record).items():
            if k not in _RESERVED and not k.startswith("_"):
                out[k] = _clean(v) if isinstance(v, str) else v
        if record.exc_info:
            out["exc"] = _clean(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_"))
        base = f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {record.levelname:<7} {record.name}: {record.getMessage()}"
        text = f"{base} {extras}".rstrip()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return _clean(text)


def setup_logging(level: str = "INFO", json_format: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_format else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
