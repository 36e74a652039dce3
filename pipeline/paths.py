"""Where the project keeps its files, and checks on the files and folders that settings point at: what they
are, how big, and no escapes."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pipeline.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_cache() -> Path:
    """Where downloaded jars, assembled backends and the embedded services' state are kept (``SPARSEINST_CACHE``
    overrides)."""
    return Path(os.environ.get("SPARSEINST_CACHE", REPO_ROOT / ".cache"))


MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def checked_file(path: str | Path, *, what: str, max_bytes: int, suffixes: tuple[str, ...] = (),
                 inside_folder: bool = False, error: type[Exception] = ConfigError) -> Path:  # fmt: skip
    """``path`` if it is a regular file of at most ``max_bytes`` with one of ``suffixes`` (and, with
    ``inside_folder``, not a link leading out of its folder); else ``error`` saying which check failed."""
    p = Path(path)
    if inside_folder and p.is_symlink() and not p.resolve().is_relative_to(p.parent.resolve()):
        raise error(f"{what} {p} is a link to {p.resolve()}, outside its folder: give the file itself")
    if suffixes and p.suffix.lower() not in suffixes:
        raise error(f"{what} {p}: expected a {' or '.join(suffixes)} file")
    if not p.is_file():
        raise error(f"{what} {p}: not found or not a regular file")
    size = p.stat().st_size
    if size > max_bytes:
        raise error(f"{what} {p}: {size / 1024**2:.1f} MiB, more than the {max_bytes / 1024**2:.1f} MiB allowed")
    return p


def checked_repository(path: str | Path) -> Path:
    """A Triton model repository: a folder whose models have plain names and whose files stay inside it.

    A symbolic link that leads out of the repository (or a model named like ``..``) would let a
    repository serve files from anywhere on the host; both are refused.
    """
    root = Path(path)
    if not root.is_dir():
        raise ConfigError(f"model repository {root}: not a folder")
    real_root = root.resolve()
    for entry in root.iterdir():
        if entry.name.startswith("."):
            continue
        if not MODEL_NAME.match(entry.name):
            raise ConfigError(f"model repository {root}: model folder name {entry.name!r} is not allowed")
        for item in [entry, *entry.rglob("*")]:
            if not item.resolve().is_relative_to(real_root):
                raise ConfigError(f"model repository {root}: {item.relative_to(root)} leads outside the repository")
    return root
