"""``up`` / ``down`` / ``status``: the embedded Kafka and Triton as background services.

``up`` starts what the settings do not point elsewhere, waits until both are ready, records
them in ``<state_dir>/stack.json`` and returns, leaving them running. ``down`` stops what that
file records. ``status`` reports addresses and liveness for local and external services alike.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from pipeline.architectures import resolve_weights
from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.local.kafka import LocalKafka, LocalKafkaConfig
from pipeline.local.ports import port_open
from pipeline.local.triton import LocalTriton, LocalTritonConfig
from pipeline.serving import contract

log = logging.getLogger(__name__)


def state_file(settings: Settings) -> Path:
    return settings.local.state_dir / "stack.json"


def read_state(settings: Settings) -> dict[str, Any]:
    path = state_file(settings)
    return json.loads(path.read_text()) if path.is_file() else {}


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not a running server
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


SOURCE_FILE = "source.json"  # which checkpoint a built repository serves


def _checkpoint_source(weights: Path | None) -> dict[str, str]:
    path = resolve_weights(weights)
    if not path.is_file():
        raise ConfigError(f"local.weights: {path} is not a checkpoint file or a shipped model's name")
    return {"weights": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def ensure_repository(settings: Settings) -> Path:
    """The repository the embedded Triton serves: the CPU profile of the configured checkpoint.

    Built once, and again when the configured checkpoint (``local.weights``, or the shipped default)
    is not the one it was built from, so changing the weights never serves the old model.
    """
    from pipeline.serving.repository import SPEC_FILE, RepositoryOptions, build_repository

    repo = settings.local.repository
    if settings.local.model_repository is not None:
        return repo
    network = repo / contract.NETWORK / "config.pbtxt"
    source = _checkpoint_source(settings.local.weights)
    built = json.loads((repo / SOURCE_FILE).read_text()) if (repo / SOURCE_FILE).is_file() else None
    # candidates need side-by-side versions: a repository rendered before them is rebuilt too
    current = (repo / SPEC_FILE).is_file() and network.is_file() and "version_policy" in network.read_text()
    current = current and (repo / contract.VIDEO_ENSEMBLE / "config.pbtxt").is_file()  # and so must video
    current = current and "kept_masks" in network.read_text()  # and the network answers kept instances only
    if not current or built is None or built["sha256"] != source["sha256"]:
        log.info("building the CPU-profile model repository of %s in %s", source["weights"], repo)
        build_repository(repo, "cpu", weights=Path(source["weights"]),
                         options=RepositoryOptions(score_threshold=settings.local.score_threshold))  # fmt: skip
        (repo / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
    return repo


def up(settings: Settings) -> StackStatus:
    """Start the embedded services that are not configured as external, in the background."""
    state = read_state(settings)
    state_dir = settings.local.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    started: list[Any] = []
    try:
        if settings.kafka.bootstrap is None and not pid_alive(state.get("kafka", {}).get("pid")):
            kafka = LocalKafka(LocalKafkaConfig(data_dir=state_dir / "kafka"))
            kafka.background = True
            kafka.start()
            started.append(kafka)
            state["kafka"] = {"pid": kafka.process.pid, "bootstrap": kafka.bootstrap,  # type: ignore[union-attr]
                              "log": str(kafka.log_path)}  # fmt: skip
        if settings.triton.grpc_url is None and not pid_alive(state.get("triton", {}).get("pid")):
            repo = ensure_repository(settings)
            triton = LocalTriton(LocalTritonConfig(model_repository=repo, log_dir=state_dir / "triton"))
            triton.background = True
            triton.start()
            started.append(triton)
            state["triton"] = {"pid": triton.process.pid, "http": triton.http_url,  # type: ignore[union-attr]
                               "grpc": triton.grpc_url, "repository": str(repo),
                               "log": str(triton.log_path)}  # fmt: skip
    except BaseException:
        for service in started:  # all or nothing: do not leave half a stack behind
            service.stop()
        raise
    for service in started:
        service.detach()
    state_file(settings).write_text(json.dumps(state, indent=2) + "\n")
    return status(settings)


def _stop_pid(pid: int, timeout_s: float = 30.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def down(settings: Settings) -> list[str]:
    """Stop the services ``up`` started; returns their names."""
    state = read_state(settings)
    stopped = []
    for name in ("triton", "kafka"):  # Triton first: nothing of ours depends on it being up for Kafka
        entry = state.get(name)
        if entry and pid_alive(entry.get("pid")):
            _stop_pid(int(entry["pid"]))
            stopped.append(name)
    state_file(settings).unlink(missing_ok=True)
    return stopped


def _http_ready(http: str | None) -> bool:
    if not http:
        return False
    try:
        with urllib.request.urlopen(f"http://{http}/v2/health/ready", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _reachable(address: str | None) -> bool:
    if not address:
        return False
    host, _, port = address.split(",")[0].rpartition(":")
    return bool(port.isdigit()) and port_open(host or "127.0.0.1", int(port))


def with_embedded_addresses(settings: Settings) -> Settings:
    """``settings`` with the addresses of the services ``up`` started wherever none is configured."""
    info = status(settings)
    kafka = settings.kafka.model_copy(update={"bootstrap": info.kafka_bootstrap})
    triton = settings.triton.model_copy(update={"grpc_url": info.triton_grpc, "http_url": info.triton_http})
    return settings.model_copy(update={"kafka": kafka, "triton": triton})


class ServiceStatus(BaseModel):
    mode: Literal["external", "embedded"]
    running: bool  # answers on its address
    pid: int | None = None  # of an embedded service
    log: str | None = None
    repository: str | None = None  # Triton's model repository (embedded)


class StackStatus(BaseModel):
    """Where the services are and whether each answers (``status --json`` prints it)."""

    kafka_bootstrap: str | None
    triton_http: str | None
    triton_grpc: str | None
    kafka: ServiceStatus
    triton: ServiceStatus

    @property
    def running(self) -> bool:
        return self.kafka.running and self.triton.running


def status(settings: Settings) -> StackStatus:
    """Addresses (``kafka_bootstrap``, ``triton_http``, ``triton_grpc``) and whether each service answers."""
    state = read_state(settings)
    k, t = state.get("kafka", {}), state.get("triton", {})
    kafka_external = settings.kafka.bootstrap is not None
    triton_external = settings.triton.grpc_url is not None
    bootstrap = settings.kafka.bootstrap if kafka_external else k.get("bootstrap")
    grpc = settings.triton.grpc_url if triton_external else t.get("grpc")
    http = settings.triton.http_url if triton_external else t.get("http")
    return StackStatus(
        kafka_bootstrap=bootstrap, triton_http=http, triton_grpc=grpc,
        kafka=ServiceStatus(mode="external" if kafka_external else "embedded", running=_reachable(bootstrap),
                            pid=None if kafka_external else k.get("pid"), log=k.get("log")),
        triton=ServiceStatus(mode="external" if triton_external else "embedded",
                             running=_http_ready(http) if http else _reachable(grpc),
                             pid=None if triton_external else t.get("pid"), log=t.get("log"),
                             repository=t.get("repository")),
    )  # fmt: skip
