"""Logging set-up for the commands: one format, and no secret in any record at any level.

kafka-python logs its whole configuration at DEBUG (``-v``), SASL password included; the filter
rewrites every record before any handler formats it.
"""

from __future__ import annotations

import logging
import re

# a key that names a secret, then ':' or '=', then its value (quoted or bare)
_SECRET = re.compile(
    r"""(?P<key>['"]?[\w.-]*(?:password|passwd|secret|token|sasl_plain_password|ssl_password)['"]?\s*[:=]\s*)"""
    r"""(?P<value>'[^']*'|"[^"]*"|[^\s,}\])]+)""",
    re.IGNORECASE,
)
REDACTED = "'***'"


def redact(text: str) -> str:
    return _SECRET.sub(lambda m: m.group("key") + REDACTED, text)


class RedactSecrets(logging.Filter):
    """Replaces secret values in a record's message and exception text; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def configure(verbose: bool) -> None:
    """Root logging for a command: INFO (DEBUG with ``verbose``), Kafka's client quiet unless ``verbose``."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
    logging.getLogger("kafka").setLevel(logging.DEBUG if verbose else logging.ERROR)  # chatty client
