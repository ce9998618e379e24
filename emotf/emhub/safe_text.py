"""Text from the server made safe for logs and messages (no forged log lines)."""

from __future__ import annotations

import logging
import unicodedata


def clean(text: object, limit: int | None = 200) -> str:
    """``text`` safe for one log line or an error message: control, format and line/paragraph
    separator characters escaped (no forged log lines), at most ``limit`` characters."""
    value = str(text)
    cut = limit is not None and len(value) > limit
    if cut:
        value = value[:limit]
    out = [
        ch if unicodedata.category(ch)[0] not in "CZ" or ch == " " else ascii(ch)[1:-1]
        for ch in value
    ]
    return "".join(out) + (f"...[{len(str(text)) - (limit or 0)} more]" if cut else "")


class EscapingFormatter(logging.Formatter):
    """Wraps a handler's formatter: every record's message goes through :func:`clean` (no
    length limit), so a newline in a task name or server reply cannot start a fake log line.
    Tracebacks (``exc_info``) keep their lines."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.msg, record.args
        record.msg, record.args = clean(record.getMessage(), None), None
        try:
            return self.inner.format(record)
        finally:
            record.msg, record.args = saved


def escape_log_lines(logger: logging.Logger | None = None) -> None:
    """Install :class:`EscapingFormatter` on every handler of ``logger`` (default: root)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not isinstance(handler.formatter, EscapingFormatter):
            handler.setFormatter(EscapingFormatter(handler.formatter))
