"""The compose file and the Kubernetes manifests, checked structurally (no Docker engine or cluster here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    docs = []
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _gpu_reserved(service: dict) -> bool:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return any("gpu" in d.get("capabilities", []) for d in devices)


def test_compose_has_the_production_services(compose):
    assert set(compose["services"]) == {"kafka", "repository-builder", "triton", "topics", "ingest", "consumers",
                                        "rollout-controller"}  # fmt: skip
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
        for dep in service.get("depends_on", {}):
            assert dep in compose["services"], f"{name} depends on unknown {dep}"


def test_kafka_runs_kraft_with_a_health_check(compose):
    kafka = compose["services"]["kafka"]
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "CONTROLLER" in env["KAFKA_LISTENERS"]
    assert "kafka-broker-api-versions" in " ".join(kafka["healthcheck"]["test"])


def test_triton_is_the_ngc_image_with_a_gpu_and_waits_for_the_repository_build(compose):
    triton = compose["services"]["triton"]
    dockerfile = (ROOT / triton["build"]["dockerfile"]).read_text()
    assert "nvcr.io/nvidia/tritonserver:" in dockerfile
    assert _gpu_reserved(triton) and _gpu_reserved(compose["services"]["repository-builder"])
    assert triton["depends_on"]["repository-builder"]["condition"] == "service_completed_successfully"
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    assert "--model-repository=/models" in triton["command"]
    builder = compose["services"]["repository-builder"]
    assert any(v.startswith("models:/models") for v in builder["volumes"])
    assert any(v.startswith("models:/models") for v in triton["volumes"])


def test_ingest_and_consumers_wait_for_healthy_services_and_the_topics(compose):
    ingest, consumers = compose["services"]["ingest"], compose["services"]["consumers"]
    topics_done = {"condition": "service_completed_successfully"}
    assert ingest["depends_on"] == {"topics": topics_done, "triton": {"condition": "service_healthy"}}
    assert consumers["depends_on"] == {"topics": topics_done}
    assert compose["services"]["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert ingest["environment"]["SPARSEINST_TRITON__GRPC_URL"] == "triton:8001"


def test_the_builder_script_uses_the_project_commands():
    script = (ROOT / "deploy" / "build_repository.sh").read_text()
    from pipeline.cli import build_parser

    parser = build_parser()
    parser.parse_args(["repo", "build", "--target", "gpu", "--out", "/models"])
    parser.parse_args(["model", "build-engine", "--onnx", "a.onnx", "--out", "a.plan", "--timing-cache", "c"])
    assert "repo build --target gpu" in script and "model build-engine" in script and "dali.serialize" in script
    from dali.serialize import main as serialize_main

    with pytest.raises(SystemExit):
        serialize_main(["--help"])


def test_the_app_commands_and_settings_are_valid(compose, manifests):
    from pipeline.cli import build_parser
    from pipeline.config import load_settings

    parser = build_parser()
    for name in ("ingest", "consumers", "topics"):
        parser.parse_args(compose["services"][name]["command"])
    consumers = _one(manifests, "StatefulSet", "consumers")["spec"]["template"]["spec"]["containers"][0]
    parser.parse_args(consumers["args"])
    parser.parse_args(["run", "--config", "x.yaml", "--shard", "3", "--shards", "4"])
    settings = load_settings(ROOT / "deploy" / "pipeline.yaml")
    assert settings.cameras and settings.consumer.rules is not None
    configmap = yaml.safe_load(_one(manifests, "ConfigMap", "sparseinst-config")["data"]["pipeline.yaml"])
    assert load_settings(None, **configmap).cameras


def test_every_manifest_is_well_formed(manifests):
    assert manifests
    for doc in manifests:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        assert doc["metadata"]["name"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "sparseinst"
        if doc["kind"] in ("Deployment", "StatefulSet"):
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()


def _one(manifests: list[dict], kind: str, name: str) -> dict:
    found = [d for d in manifests if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def test_triton_deployment_is_behind_a_service_and_gets_a_gpu(manifests):
    deployment = _one(manifests, "Deployment", "triton")
    service = _one(manifests, "Service", "triton")
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    named = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= named
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"


def _k8s_settings(manifests: list[dict]):
    from pipeline.config import load_settings

    return load_settings(
        None, **yaml.safe_load(_one(manifests, "ConfigMap", "sparseinst-config")["data"]["pipeline.yaml"])
    )


def test_ingest_shards_match_replicas_and_every_shard_has_cameras(manifests):
    from pipeline.apps.ingest import build_sources

    ingest = _one(manifests, "StatefulSet", "ingest")
    container = ingest["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    shards = int(env["INGEST_SHARDS"])
    assert shards == ingest["spec"]["replicas"]
    assert "--shard" in " ".join(container["args"]) and "--shards" in " ".join(container["args"])
    settings = _k8s_settings(manifests)
    assert all(build_sources(settings, shard=k, shards=shards) for k in range(shards))


def test_topics_have_one_owner_and_the_layout_the_apps_need(compose, manifests):
    from pipeline.config import load_settings

    job = _one(manifests, "Job", "sparseinst-topics")["spec"]["template"]["spec"]["containers"][0]
    assert job["args"][:2] == ["topics", "create"] and compose["services"]["topics"]["command"][:2] == [
        "topics",
        "create",
    ]
    k8s = _k8s_settings(manifests)
    partitions = int(_one(manifests, "ConfigMap", "sparseinst-config")["data"]["KAFKA_PARTITIONS"])
    assert k8s.kafka.topics.partitions == partitions
    assert k8s.kafka.topics.replication == 3 and k8s.kafka.topics.min_insync_replicas == 2
    local = load_settings(ROOT / "deploy" / "pipeline.yaml")
    kafka_env = compose["services"]["kafka"]["environment"]
    assert local.kafka.topics.replication == 1 and kafka_env["KAFKA_NODE_ID"] == 1  # compose runs one broker
    for settings in (k8s, local):  # the apps check the topics; only the owner creates them
        assert settings.kafka.create_topics is False


def test_consumers_scale_up_to_the_partition_count_each_with_its_own_identity_and_sink(compose, manifests):
    partitions = int(_one(manifests, "ConfigMap", "sparseinst-config")["data"]["KAFKA_PARTITIONS"])
    consumers = _one(manifests, "StatefulSet", "consumers")
    hpa = _one(manifests, "HorizontalPodAutoscaler", "consumers")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "consumers"}
    assert consumers["spec"]["replicas"] <= hpa["spec"]["maxReplicas"] <= partitions
    container = consumers["spec"]["template"]["spec"]["containers"][0]
    pod_name = [e for e in container["env"] if e["name"] == "POD_NAME"]
    assert pod_name and pod_name[0]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"  # member id
    claims = {c["metadata"]["name"] for c in consumers["spec"]["volumeClaimTemplates"]}
    sink = _k8s_settings(manifests).consumer.sink
    assert sink is not None and "{member}" in str(sink)  # one file per replica...
    assert any(m["name"] in claims and str(sink).startswith(m["mountPath"]) for m in container["volumeMounts"])
    from pipeline.config import load_settings

    compose_sink = load_settings(ROOT / "deploy" / "pipeline.yaml").consumer.sink
    assert compose["services"]["consumers"]["deploy"]["replicas"] > 1 and "{member}" in str(compose_sink)


NGC_PYTHON = {"24": (3, 10), "25": (3, 12)}  # NGC release year -> Ubuntu's Python in its images


def test_images_have_a_python_the_package_supports():
    import re
    import tomllib

    floor = tuple(
        int(v)
        for v in re.findall(r"\d+", tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    )
    for name in ("triton", "builder"):
        text = (ROOT / "deploy" / "docker" / f"{name}.Dockerfile").read_text()
        version = re.search(r"ARG \w+_VERSION=(\d\d)\.\d\d", text)
        assert version and NGC_PYTHON[version.group(1)] >= floor, (name, version)
    app = (ROOT / "deploy" / "docker" / "app.Dockerfile").read_text()
    found = re.search(r"FROM python:(\d+)\.(\d+)", app)
    assert found and (int(found.group(1)), int(found.group(2))) >= floor


def test_build_contexts_leave_out_the_virtualenv_and_caches():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".venv", ".cache", ".git", "runs", "build"):
        assert path in ignored


def test_apps_expose_their_metrics(compose, manifests):
    settings = _k8s_settings(manifests)
    assert settings.metrics.port == 9400 and settings.metrics.address == "0.0.0.0"
    for kind, name in (("StatefulSet", "ingest"), ("StatefulSet", "consumers")):
        container = _one(manifests, kind, name)["spec"]["template"]["spec"]["containers"][0]
        assert {"name": "metrics", "containerPort": settings.metrics.port} in container["ports"]


def test_one_rollout_controller_runs_with_a_valid_command(compose, manifests):
    from pipeline.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(compose["services"]["rollout-controller"]["command"])
    assert (args.command, args.rollout_command) == ("rollout", "controller")
    deployment = _one(manifests, "Deployment", "rollout-controller")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    parser.parse_args(deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "replicas" not in compose["services"]["rollout-controller"].get("deploy", {})


def test_compose_publishes_triton_on_loopback_only():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    ports = compose["services"]["triton"]["ports"]
    assert ports and all(p.startswith("${TRITON_BIND:-127.0.0.1}:") for p in ports), ports
