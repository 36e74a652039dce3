"""Slim hosts: the `run` and `consume` commands import no PyTorch, and a consumer host installed with
only its role's extra (`pip install '.[consume]'`) has no PyTorch, DALI or Triton client and still
turns real detections into events."""

from __future__ import annotations

import json
import subprocess
import sys
import venv

import pytest
import yaml

from consumers.rules import DEMO_RULES
from pipeline.data.detections import moving_cars
from tests.conftest import REPO_ROOT
from tests.streams import new_topics, read_topic

pytestmark = pytest.mark.slow

HEAVY = ("torch", "nvidia.dali", "onnxruntime")


def _imported(stderr: str) -> set[str]:
    """Module names from ``python -X importtime`` output."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def _publish(bootstrap: str, topic: str, n: int = 30) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for f in moving_cars(n, camera_id="veh-1/right", instances=3, stream_epoch=1):
        producer.send(topic, key=f.camera_id.encode(), value=f.model_dump_json().encode())
    producer.flush()
    producer.close()


def _config(tmp_path, kafka, topics, triton=None) -> str:
    data = {
        "kafka": {"bootstrap": kafka.bootstrap, "detections_topic": topics.detections, "events_topic": topics.events},
        "consumer": {"rules": str(DEMO_RULES), "group_id": f"g-{topics.events}",
                     "sink": None},
        "cameras": [{"vehicle_id": "veh-9", "synthetic_seed": 9, "cameras": 1, "seconds": 1.0}],
    }  # fmt: skip
    if triton is not None:
        data["triton"] = {"grpc_url": triton.grpc_url, "http_url": triton.http_url}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_run_and_consume_import_no_torch(tmp_path, kafka, triton):
    topics = new_topics(kafka.bootstrap)
    config = _config(tmp_path, kafka, topics, triton)
    for command in (["run"], ["consume", "--idle-exit", "3"]):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "pipeline", *command, "--config", config],
                              capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        imported = _imported(done.stderr)
        assert "kafka" in imported  # the probe sees the command's imports
        assert not {m for m in imported if m.split(".")[0] in HEAVY or m.startswith(HEAVY)}, command
    assert read_topic(kafka.bootstrap, topics.events), "the commands ran for real: events came out"


def test_a_consumer_host_installs_no_torch_dali_or_triton_client_and_makes_events(tmp_path, kafka):
    env = tmp_path / "consume-host"
    venv.create(env, with_pip=True)
    py = str(env / "bin" / "python")
    pip = subprocess.run([py, "-m", "pip", "install", "--quiet", f"{REPO_ROOT}[consume]"], capture_output=True,
                         text=True, timeout=900)  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-3000:]
    listed = subprocess.run([py, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True)
    installed = {line.split("==")[0].lower() for line in listed.stdout.splitlines()}
    assert not installed & {"torch", "nvidia-dali-cuda120", "tritonclient", "onnxruntime", "nvidia-pytriton"}
    topics = new_topics(kafka.bootstrap)
    _publish(kafka.bootstrap, topics.detections)
    done = subprocess.run([py, "-m", "pipeline", "consume", "--config", _config(tmp_path, kafka, topics),
                           "--idle-exit", "3"], capture_output=True, text=True, cwd=tmp_path, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    events = read_topic(kafka.bootstrap, topics.events)
    assert {e.type for e in events} >= {"track.started", "line.crossed"}, sorted({e.type for e in events})
    # the subscriber's side runs there too: the client, `events tail` and `events export`, without PyTorch
    config = _config(tmp_path, kafka, topics)
    tail = subprocess.run([py, "-X", "importtime", "-m", "pipeline", "events", "tail", "--config", config, "--from",
                           "earliest", "--to-end", "--json"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)  # fmt: skip
    assert tail.returncode == 0, tail.stderr[-3000:]
    assert sorted(json.loads(line)["event_id"] for line in tail.stdout.splitlines()) == sorted(
        e.event_id for e in events
    )
    assert not {m for m in _imported(tail.stderr) if m.split(".")[0] in HEAVY}
    out = tmp_path / "events.parquet"
    export = subprocess.run([py, "-m", "pipeline", "events", "export", "--config", config, "--from-topic",
                             "--out", str(out), "--quiet"], capture_output=True, text=True, cwd=tmp_path,
                            timeout=300)  # fmt: skip
    assert export.returncode == 0 and f"wrote {len(events)} events" in export.stdout, export.stderr[-3000:]
    client = ("from pipeline.subscriber import EventFilter, EventSubscriber\n"
              f"sub = EventSubscriber({kafka.bootstrap!r}, {topics.events!r}, start='earliest', "
              "filter=EventFilter(types=['line.crossed']))\n"
              "print(len(list(sub.events(to_end=True))))\n"
              "import sys; assert 'torch' not in sys.modules")  # fmt: skip
    done = subprocess.run([py, "-c", client], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout) == sum(e.type == "line.crossed" for e in events)
