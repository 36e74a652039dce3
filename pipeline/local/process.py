"""The lifecycle shared by the local services: a child process, a scratch folder, a clean stop."""

from __future__ import annotations

import abc
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Self

from pipeline.errors import PipelineError
from pipeline.paths import REPO_ROOT, default_cache

__all__ = ["REPO_ROOT", "LocalService", "ServiceError", "default_cache"]


class ServiceError(PipelineError):
    """A local service could not be set up, started or reached."""


def descendants(pid: int) -> list[int]:
    """The process ids below ``pid`` (Linux ``/proc``; empty elsewhere)."""
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def reap(pids: list[int], grace_s: float = 5.0) -> None:
    """SIGKILL what is left of a server's children once it is gone (Triton's Python-backend stubs can
    outlive a killed server, holding hundreds of MB each)."""
    deadline = time.monotonic() + grace_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and _state(p) != "Z"]
        if alive:
            time.sleep(0.2)
    for p in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


class LocalService(abc.ABC):
    """Owns one server process; subclasses implement :meth:`start`."""

    name = "service"

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.background = False  # own session: survives the starting process (``up``), immune to its Ctrl-C

    def spawn(self, cmd: list[str], out: IO[bytes], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=self.background)  # fmt: skip

    def detach(self) -> int:
        """Leave the server running after this object is gone; returns its pid."""
        if not self.alive():
            raise ServiceError(f"{self.name} is not running")
        assert self.process is not None
        pid, self.process, self._tmp = self.process.pid, None, None
        return pid

    def scratch_dir(self, given: Path | None) -> Path:
        """``given``, or a temporary folder removed on :meth:`stop`."""
        if given is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"sparseinst-{self.name}-")
            given = Path(self._tmp.name)
        given.mkdir(parents=True, exist_ok=True)
        return given

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @abc.abstractmethod
    def start(self) -> Self:
        """Start the server and return once it is ready."""

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; its data folder stays for a restart."""
        if self.alive():
            assert self.process is not None
            children = descendants(self.process.pid)
            self.process.kill()
            self.process.wait()
            reap(children)

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.alive():
            assert self.process is not None
            children = descendants(self.process.pid)
            self.process.terminate()  # SIGTERM: both servers shut down cleanly on it
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            reap(children)
        self.process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
