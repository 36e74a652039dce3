"""Free loopback ports and readiness polling."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from pipeline.errors import PipelineError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], *, timeout_s: float, what: str, alive: Callable[[], bool]) -> None:
    """Poll ``check`` until it is true; fail early when the process dies, or after ``timeout_s``.

    Connection errors mean "not up yet"; errors of the project's own types propagate at once.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"{what} exited during startup")
        try:
            if check():
                return
        except PipelineError:
            raise
        except Exception:  # not up yet: connection refused, metadata not ready, ...
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{what} was not ready after {timeout_s:.0f} s")
