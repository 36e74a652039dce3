"""A record that could not be used, as the :class:`~pipeline.messages.DeadLetter` that says why."""

from __future__ import annotations

from pydantic import ValidationError

from pipeline.messages import DeadLetter

MAX_DEAD_LETTER_VALUE = 64 * 1024  # of the original value kept in the dead letter


def describe(exc: BaseException) -> str:
    """One line for ``exc``: the first three fields of a validation error, else its first line."""
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
    return (str(exc).splitlines() or [""])[0] or type(exc).__name__


def dead_letter(record, reason: str, exc: BaseException) -> DeadLetter:
    """``record`` (a kafka-python ``ConsumerRecord``) dead-lettered for ``reason``, raised as ``exc``."""
    return DeadLetter(
        topic=record.topic, partition=record.partition, offset=record.offset,
        key=record.key.decode("utf-8", errors="replace") if record.key else None,
        reason=f"{reason}: {describe(exc)}", error_type=type(exc).__name__,
        value=(record.value or b"")[:MAX_DEAD_LETTER_VALUE].decode("utf-8", errors="replace"),
    )  # fmt: skip
