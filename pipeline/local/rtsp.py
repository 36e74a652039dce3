"""A local RTSP server (GStreamer, run by the system Python) publishing video files as live cameras."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
from pathlib import Path

from pipeline.local.ports import free_port, wait_until
from pipeline.local.process import LocalService, ServiceError

log = logging.getLogger(__name__)

SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
# Debian's Python carries GStreamer's bindings; the project's virtualenv does not
SYSTEM_PYTHON = "/usr/bin/python3"
PACKAGES = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"


def rtsp_available(python: str = SYSTEM_PYTHON) -> bool:
    """Can ``python`` import GStreamer's RTSP server?"""
    if not shutil.which(python):
        return False
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import GstRtspServer")  # fmt: skip
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


class LocalRtsp(LocalService):
    """``mounts``: name -> video file (H.264 unless ``name`` maps to ``(file, codec)``); ``url(name)`` to read."""

    name = "rtsp"

    def __init__(self, mounts: dict[str, Path | tuple[Path, str]], *, host: str = "127.0.0.1", port: int = 0,
                 python: str = SYSTEM_PYTHON, startup_timeout_s: float = 20.0) -> None:  # fmt: skip
        super().__init__()
        self.mounts, self.host, self.port, self.python = mounts, host, port, python
        self.startup_timeout_s = startup_timeout_s
        self.log_path: Path | None = None

    def url(self, mount: str) -> str:
        return f"rtsp://{self.host}:{self.port}/{mount}"

    def start(self) -> LocalRtsp:
        if not rtsp_available(self.python):
            raise ServiceError(f"{self.python} cannot import GStreamer's RTSP server: install {PACKAGES}")
        self.port = self.port or free_port(self.host)
        args = []
        for name, item in self.mounts.items():
            path, codec = item if isinstance(item, tuple) else (item, "h264")
            if not Path(path).is_file():
                raise ServiceError(f"RTSP mount {name}: file not found: {path}")
            args += ["--mount", f"{name}={Path(path).resolve()}:{codec}"]
        self.log_path = self.scratch_dir(None) / "rtsp.log"
        out = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.spawn([self.python, str(SERVER_SCRIPT), "--host", self.host, "--port", str(self.port), *args], out)
        wait_until(self._listening, timeout_s=self.startup_timeout_s, what=f"RTSP server on {self.host}:{self.port}",
                   alive=self.alive)  # fmt: skip
        log.info("RTSP server on %s:%d serving %s", self.host, self.port, ", ".join(self.mounts))
        return self

    def restart(self) -> LocalRtsp:
        """Start again on the same port (after :meth:`kill`), as a camera that comes back."""
        self.process = None
        return self.start()

    def _listening(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex((self.host, self.port)) == 0
