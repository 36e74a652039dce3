"""Secrets read from files (container secrets, Kubernetes Secret volumes), so no password sits in an
environment variable, a command line or a settings file."""

from __future__ import annotations

from pathlib import Path

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
