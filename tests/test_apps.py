"""``run`` (ingest) and ``consume`` (events + sink) as configured applications, against external services."""

from __future__ import annotations

import uuid

import pytest
import yaml

from consumers.rules import DEMO_RULES
from consumers.sink import EventStore
from pipeline.apps.consume import run_consume
from pipeline.apps.ingest import build_sources, run_ingest
from pipeline.config import load_settings
from pipeline.errors import ConfigError
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def settings_file(tmp_path, kafka, triton, **extra) -> str:
    tag = uuid.uuid4().hex[:8]
    data = {
        "kafka": {"bootstrap": kafka.bootstrap, "detections_topic": f"det-{tag}", "events_topic": f"ev-{tag}"},
        "triton": {"grpc_url": triton.grpc_url, "http_url": triton.http_url},
        "consumer": {"rules": str(DEMO_RULES), "group_id": f"g-{tag}",
                     "sink": str(tmp_path / "events.sqlite")},
        "cameras": [{"vehicle_id": "veh-7", "synthetic_seed": 7, "cameras": 2, "seconds": 2.0}],
        **extra,
    }  # fmt: skip
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_run_then_consume_fills_the_sink(tmp_path, kafka, triton):
    settings = load_settings(settings_file(tmp_path, kafka, triton))
    ingest = run_ingest(settings)
    assert ingest["frames_published"] == 2 * 20 and ingest["sources"][0]["state"] == "ended"
    consumed = run_consume(settings, idle_exit_s=4.0)
    assert consumed["messages"] == 40 + 2  # frames, plus one end-of-stream per camera
    store = EventStore(tmp_path / "events.sqlite")
    counts = store.counts()
    store.close()
    assert counts["track.started"] == counts["track.ended"] == consumed["events"]["track.started"] > 0


def test_cameras_are_sharded_by_index(tmp_path, kafka, triton):
    cams = [{"id": f"c{i}", "uri": str(tmp_path)} for i in range(5)]
    settings = load_settings(settings_file(tmp_path, kafka, triton, cameras=cams))
    shards = [[s.camera_ids[0] for s in build_sources(settings, shard=k, shards=2)] for k in range(2)]
    assert shards == [["c0", "c2", "c4"], ["c1", "c3"]]
    with pytest.raises(ConfigError, match="shard"):
        build_sources(settings, shard=2, shards=2)


def _scrape_while_running(found: dict, ready_metric: str):
    """An ``on_metrics`` callback: scrape the endpoint in the background until ``ready_metric`` is above 0."""
    import threading
    import time
    import urllib.request

    def scrape(port: int) -> None:
        for _ in range(200):
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            if any(line.startswith(ready_metric) and not line.endswith(" 0.0") for line in text.splitlines()):
                found["text"] = text
                return
            time.sleep(0.1)

    return lambda port: threading.Thread(target=scrape, args=(port,), daemon=True).start()


def test_run_and_consume_serve_prometheus_metrics(tmp_path, kafka, triton):
    import time

    settings = load_settings(settings_file(tmp_path, kafka, triton, metrics={"port": 0}))
    ingest: dict = {}
    run_ingest(settings, on_metrics=_scrape_while_running(ingest, "sparseinst_ingest_frames_published_total"))
    consume: dict = {}
    run_consume(settings, idle_exit_s=3.0, on_metrics=_scrape_while_running(consume, "sparseinst_consumer_messages"))
    time.sleep(0.1)
    text = ingest.get("text", "")
    for name in ("sparseinst_ingest_frames_read_total{camera=\"veh-7/front\"}",
                 "sparseinst_ingest_frames_published_total{camera=", "sparseinst_ingest_publish_latency_seconds_bucket",
                 "sparseinst_ingest_frames_queued"):  # fmt: skip
        assert name in text, (name, text[:2000])
    text = consume.get("text", "")
    for name in ("sparseinst_consumer_messages_total", "sparseinst_consumer_events_total{type=\"track.started\"}",
                 "sparseinst_consumer_dead_letters_total", "sparseinst_consumer_transactions_aborted_total",
                 "sparseinst_consumer_lag{partition="):  # fmt: skip
        assert name in text, (name, text[:2000])


def test_the_ingest_side_imports_no_consumers_and_the_model_code_no_kafka():
    import subprocess
    import sys

    probe = ("import sys, pipeline.apps.ingest, pipeline.publish, pipeline.kafka, pipeline.model; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'consumers'}), "
             "sorted(m for m in sys.modules if m.startswith('pipeline.model') and 'kafka' in m))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert out.stdout.split() == ["[]", "[]"], out.stdout
    model_sources = " ".join(p.read_text() for p in (REPO_ROOT / "pipeline" / "model").glob("*.py"))
    assert "kafka" not in model_sources and "tritonclient" not in model_sources


def _imports(path) -> set[str]:
    """Every module ``path`` imports (top level and inside functions)."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


@pytest.mark.parametrize(("modules", "never"), [
    ("pipeline/ingest/*.py", ("pipeline.rollout", "consumers")),  # ingest owns its routing seam
    ("pipeline/apps/*.py", ("pipeline.local", "pipeline.demo")),  # production paths see settings only
    ("pipeline/config.py", ("pipeline.local", "pipeline.demo")),
    ("pipeline/bench/*.py", ("pipeline.demo",)),
    ("consumers/**/*.py", ("pipeline.apps", "pipeline.ingest", "pipeline.local", "pipeline.demo", "pipeline.cli")),
])  # fmt: skip
def test_the_arrows_point_one_way(modules, never):
    files = sorted(REPO_ROOT.glob(modules))
    assert files
    for path in files:
        bad = {m for m in _imports(path) if any(m == n or m.startswith(n + ".") for n in never)}
        assert not bad, f"{path.relative_to(REPO_ROOT)} imports {sorted(bad)}"
