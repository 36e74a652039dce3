"""Triton Inference Server from the ``nvidia-pytriton`` wheel, started on loopback.

The wheel ships ``tritonserver`` with the Python backend (and ensembles) but keeps the backend
stub per Python version elsewhere; the server looks for the stub beside ``libtriton_python.so``,
so a backend folder is assembled in the cache with the stub of the running Python. The stub
runs the first ``python3`` on ``PATH``, so this interpreter's ``bin/`` goes first. Models are
loaded explicitly (``--model-control-mode explicit``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from pipeline.local.ports import free_port, wait_until
from pipeline.local.process import LocalService, ServiceError, default_cache
from pipeline.paths import checked_repository
from pipeline.serving.control import control_headers, restricted_api_args

log = logging.getLogger(__name__)


class ModelLoadError(ServiceError):
    """Triton started but a model failed to load."""


class LocalTritonConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_repository: Path
    load_models: list[str] = Field(default_factory=lambda: ["*"], description="models loaded at startup; '*' = all")
    host: str = "127.0.0.1"
    http_port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    grpc_port: int = Field(0, ge=0, le=65535)
    metrics_port: int = Field(0, ge=0, le=65535)
    log_dir: Path | None = None
    backends_dir: Path = Field(default_factory=lambda: default_cache() / "triton-backends")
    startup_timeout_s: float = Field(120.0, gt=0)
    verbose: int = Field(0, ge=0)
    control_key: SecretStr | None = Field(None, description="restrict model control to holders of this key")


def _pytriton_server_dir() -> Path:
    try:
        import pytriton
    except ImportError as exc:
        raise ServiceError("the Triton binary comes with the 'nvidia-pytriton' package; pip install it") from exc
    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def prepare_backends(target: Path) -> Path:
    """A backend folder whose ``python/`` holds the backend library and this Python's stub."""
    server = _pytriton_server_dir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = server / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServiceError(f"nvidia-pytriton has no Python-backend stub for Python {version}")
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for src in [*sorted((server / "backends" / "python").glob("*")), stub]:
        if src.is_file():
            dst = python_dir / src.name
            if not dst.exists() or dst.stat().st_size != src.stat().st_size:
                shutil.copy2(src, dst)
    return target


class LocalTriton(LocalService):
    """Start with :meth:`start` (or as a context manager); exposes ``http_url`` and ``grpc_url``."""

    name = "triton"

    def __init__(self, config: LocalTritonConfig) -> None:
        super().__init__()
        self.config = config
        self.http_port, self.grpc_port, self.metrics_port = config.http_port, config.grpc_port, config.metrics_port
        self.log_path: Path | None = None

    @property
    def http_url(self) -> str:
        return f"{self.config.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.config.host}:{self.grpc_port}"

    def command(self) -> list[str]:
        c = self.config
        cmd = [
            str(_pytriton_server_dir() / "bin" / "tritonserver"),
            f"--model-repository={c.model_repository}",
            f"--backend-directory={prepare_backends(c.backends_dir)}",
            "--model-control-mode=explicit",
            f"--http-address={c.host}", f"--http-port={self.http_port}",
            f"--grpc-address={c.host}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={c.host}", f"--metrics-port={self.metrics_port}",
            "--exit-on-error=false",  # one broken model must not take the others down
            f"--log-verbose={c.verbose}",
        ]  # fmt: skip
        restricted = restricted_api_args(c.control_key) if c.control_key is not None else []
        return cmd + restricted + [f"--load-model={m}" for m in c.load_models]

    def start(self) -> LocalTriton:
        c = self.config
        if not c.model_repository.is_dir():
            raise ServiceError(f"model repository not found: {c.model_repository}")
        checked_repository(c.model_repository)
        for attr in ("http_port", "grpc_port", "metrics_port"):
            if not getattr(self, attr):
                setattr(self, attr, free_port(c.host))
        self.log_path = self.scratch_dir(c.log_dir) / "tritonserver.log"
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        # the stub links against the CUDA runtime the wheel vendors next to the package
        libs = _pytriton_server_dir().parent.parent / "nvidia_pytriton.libs"
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(libs), env.get("LD_LIBRARY_PATH", "")) if p)
        out = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.spawn(self.command(), out, env)
        log.info("starting Triton (HTTP %s, gRPC %s) on %s", self.http_url, self.grpc_url, c.model_repository)
        try:
            wait_until(self._ready, timeout_s=c.startup_timeout_s, what=f"Triton on {self.http_url}",
                       alive=self.alive)  # fmt: skip
        except ModelLoadError:
            self.stop()
            raise
        except (RuntimeError, TimeoutError) as exc:
            tail = self.log_path.read_text(errors="replace")[-4000:]
            self.stop()
            raise ServiceError(f"{exc}; server log tail:\n{tail}") from exc
        return self

    def _ready(self) -> bool:
        """Ready with every model loaded, or settled with one that failed (then raise with Triton's reason)."""
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as resp:
                ready = resp.status == 200
        except urllib.error.HTTPError:
            ready = False  # live but not ready: look at the models
        models = self.models()
        if any(m.get("state") == "LOADING" for m in models):
            return False
        failed = {m["name"]: m.get("reason", "") for m in models if m.get("state") == "UNAVAILABLE"}
        if failed:
            raise ModelLoadError("; ".join(f"{name}: {reason}" for name, reason in failed.items()))
        return ready

    def models(self) -> list[dict]:
        """The repository index: name, version, state and reason of every model Triton knows."""
        req = urllib.request.Request(f"http://{self.http_url}/v2/repository/index", data=b"{}", method="POST",
                                     headers=control_headers(self.config.control_key))  # fmt: skip
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def load(self, models: Sequence[str]) -> None:
        """Load (or reload) models through the repository API."""
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(self.http_url)
        for name in models:
            client.load_model(name, headers=control_headers(self.config.control_key))
