"""``up`` / ``down`` / ``status`` and the settings they read."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.architectures import DEFAULT_MODEL, SHIPPED_MODELS
from pipeline.config import Settings, load_settings
from pipeline.errors import ConfigError
from pipeline.local import stack
from pipeline.local.stack import ensure_repository


def test_settings_come_from_yaml_then_environment_then_arguments(tmp_path, monkeypatch):
    path = tmp_path / "settings.yaml"
    path.write_text("kafka:\n  bootstrap: file-host:9092\n  events_topic: ev\ntriton:\n  grpc_url: file-host:8001\n")
    monkeypatch.setenv("SPARSEINST_KAFKA__BOOTSTRAP", "env-host:9092")
    settings = load_settings(path, triton={"timeout_s": 3})
    assert settings.kafka.bootstrap == "env-host:9092"
    assert settings.kafka.events_topic == "ev"
    assert settings.triton.grpc_url == "file-host:8001"
    assert settings.triton.timeout_s == 3


def test_invalid_settings_name_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("triton:\n  timeout_s: -1\n  grpc_urll: x:1\n")
    with pytest.raises(ConfigError, match=r"triton\.timeout_s: Input should be greater than 0.*triton\.grpc_urll"):
        load_settings(path)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.yaml")


@pytest.mark.slow
def test_up_starts_both_in_the_background_and_down_stops_them(tmp_path, cpu_repository):
    config = tmp_path / "local.yaml"
    config.write_text(f"local:\n  state_dir: {tmp_path / 'state'}\n  model_repository: {cpu_repository}\n")
    settings = load_settings(config)
    cli = [sys.executable, "-m", "pipeline"]
    try:
        up = subprocess.run([*cli, "up", "--config", str(config)], capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stderr[-3000:]
        # the starting process has exited; the services live on
        run = subprocess.run([*cli, "status", "--json", "--config", str(config)], capture_output=True, text=True)
        assert run.returncode == 0, run.stdout
        info = json.loads(run.stdout)
        assert info["kafka_bootstrap"].startswith("127.0.0.1:")
        assert info["triton_http"].startswith("127.0.0.1:") and info["triton_grpc"].startswith("127.0.0.1:")
        assert info["kafka"]["running"] and info["triton"]["running"]
        pids = [info["kafka"]["pid"], info["triton"]["pid"]]
        # a second 'up' finds them running and starts nothing
        again = stack.up(settings)
        assert [again.kafka.pid, again.triton.pid] == pids
    finally:
        assert sorted(stack.down(settings)) == ["kafka", "triton"]
    after = stack.status(settings)
    assert not after.kafka.running and not after.triton.running
    assert not any(stack.pid_alive(pid) for pid in pids)  # gone (or a zombie awaiting its reaper)


@pytest.mark.slow
def test_external_services_are_used_as_they_are(tmp_path, kafka, triton):
    settings = load_settings(
        None,
        kafka={"bootstrap": kafka.bootstrap},
        triton={"grpc_url": triton.grpc_url, "http_url": triton.http_url},
        local={"state_dir": str(tmp_path)},
    )
    info = stack.up(settings)
    assert info.kafka_bootstrap == kafka.bootstrap and info.triton_grpc == triton.grpc_url
    assert info.kafka.mode == info.triton.mode == "external"
    assert info.running
    assert stack.read_state(settings) == {}  # nothing was started
    assert stack.down(settings) == []


def test_the_embedded_repository_follows_the_configured_weights(tmp_path):
    settings = Settings(local={"state_dir": tmp_path})
    repo = ensure_repository(settings)
    onnx = repo / "sparseinst" / "1" / "model.onnx"
    assert json.loads((repo / "model_spec.json").read_text())["name"] == DEFAULT_MODEL
    built_at = onnx.stat().st_mtime_ns
    assert ensure_repository(settings) == repo and onnx.stat().st_mtime_ns == built_at  # built once
    other = next(name for name in SHIPPED_MODELS if name != DEFAULT_MODEL)
    ensure_repository(Settings(local={"state_dir": tmp_path, "weights": other}))
    assert json.loads((repo / "model_spec.json").read_text())["name"] == other  # never the old model
    with pytest.raises(ConfigError, match=r"local\.weights"):
        ensure_repository(Settings(local={"state_dir": tmp_path, "weights": tmp_path / "missing.pth"}))
