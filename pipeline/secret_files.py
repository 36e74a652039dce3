"""Secrets read from files (container secrets, Kubernetes Secret volumes), so no password sits in an
environment variable, a command line or a settings file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr

MAX_SECRET_BYTES = 4096


def read_secret(path: Path) -> SecretStr:
    """The file's text without its trailing newline; a missing, empty or oversized file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"secret file not found: {path}")
    if path.stat().st_size > MAX_SECRET_BYTES:
        raise ValueError(f"secret file {path} is larger than {MAX_SECRET_BYTES} bytes")
    value = path.read_text().rstrip("\r\n")
    if not value:
        raise ValueError(f"secret file {path} is empty")
    return SecretStr(value)


def not_both(data: Any, value: str, file: str) -> Any:
    """For a ``mode="before"`` validator: a secret is given inline or as a file, never both."""
    if isinstance(data, dict) and data.get(value) is not None and data.get(file) is not None:
        raise ValueError(f"set {value} or {file}, not both")
    return data


def value_or_file(value: SecretStr | None, file: Path | None, where: str, error: type[Exception]) -> SecretStr | None:
    """The inline secret, or the file's, read now (so a rotated secret is picked up); ``error`` names ``where``."""
    if file is None:
        return value
    try:
        return read_secret(file)
    except ValueError as exc:
        raise error(f"{where}: {exc}") from None
