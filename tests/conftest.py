"""Shared fixtures: the official-model reference files and deterministic official-layout weights."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "sparseinst"
SEED_HASHES = {
    "r50_giam": "f3afdc05b3de644635339ccc83021fbf3d8535c83952e1074c9c248c6f322a8e",
    "r50_base": "f9588fa6d1dd3cbb2f389f5f5e0f230e887158e5c5a2df964138461fcbd4d67e",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def official_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Seed-1234 official-layout checkpoints made by the reference generator, checked by content hash."""
    out = {}
    folder = tmp_path_factory.mktemp("weights")
    for arch, expected in SEED_HASHES.items():
        path = folder / f"{arch}_seed1234.pth"
        manifest = FIXTURES / f"manifest_{arch}.json"
        run = subprocess.run(
            [sys.executable, str(FIXTURES / "gen_weights.py"), str(manifest), "1234", str(path), "--sha256"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        assert f"content_sha256 {expected}" in run.stdout, run.stdout
        out[arch] = path
    return out


@pytest.fixture(scope="session")
def reference() -> dict[str, dict[str, np.ndarray]]:
    return {arch: dict(np.load(FIXTURES / f"reference_{arch}_a.npz")) for arch in SEED_HASHES}


# Real services, started once per test session on loopback and free ports.


@pytest.fixture(scope="session")
def kafka():
    from pipeline.local.kafka import LocalKafka

    with LocalKafka() as broker:
        yield broker


SERVING_SCORE_THRESHOLD = 0.3


@pytest.fixture(scope="session")
def cpu_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CPU-profile model repository of the shipped model, rendered by the project's own builder."""
    from pipeline.serving.repository import RepositoryOptions, build_repository

    out = tmp_path_factory.mktemp("model_repository")
    return build_repository(out, "cpu", options=RepositoryOptions(score_threshold=SERVING_SCORE_THRESHOLD))


@pytest.fixture(scope="session")
def triton(cpu_repository: Path):
    from pipeline.local.triton import LocalTriton, LocalTritonConfig

    with LocalTriton(LocalTritonConfig(model_repository=cpu_repository)) as server:
        yield server


@pytest.fixture(scope="session")
def cluster():
    """Three combined broker+controller nodes (one KRaft quorum), replication 3, min.insync.replicas 2."""
    from pipeline.local.kafka import LocalKafkaCluster

    with LocalKafkaCluster(3, min_insync_replicas=2) as nodes:
        yield nodes


# Fault tests add one row each: printed as a table at the end of the run (the README's table comes from it).
FAULT_ROWS: list[dict] = []
ROLLOUT_FIGURES: dict[str, dict] = {}  # test_rollout.py: the judgements and the replay diff


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if ROLLOUT_FIGURES:
        import json

        terminalreporter.section("rollouts: judgements and replay")
        for name, figures in ROLLOUT_FIGURES.items():
            terminalreporter.write_line(f"{name}: {json.dumps(figures, default=str)}")
    if not FAULT_ROWS:
        return
    cols = ["fault", "frames read", "published (acked)", "dropped by reason", "events expected", "found",
            "duplicated", "lost"]  # fmt: skip
    terminalreporter.section("faults: every frame and event counted")
    terminalreporter.write_line("| " + " | ".join(cols) + " |")
    terminalreporter.write_line("|" + " --- |" * len(cols))
    for row in FAULT_ROWS:
        terminalreporter.write_line("| " + " | ".join(str(row.get(c, "")) for c in cols) + " |")
