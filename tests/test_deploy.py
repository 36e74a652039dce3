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
    assert set(compose["services"]) == {"kafka", "repository-builder", "triton", "ingest", "consumers"}
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


def test_ingest_and_consumers_wait_for_healthy_services(compose):
    ingest, consumers = compose["services"]["ingest"], compose["services"]["consumers"]
    assert ingest["depends_on"] == {"kafka": {"condition": "service_healthy"},
                                    "triton": {"condition": "service_healthy"}}  # fmt: skip
    assert consumers["depends_on"]["kafka"]["condition"] == "service_healthy"
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
    for name in ("ingest", "consumers"):
        parser.parse_args(compose["services"][name]["command"])
    consumers = _one(manifests, "Deployment", "consumers")["spec"]["template"]["spec"]["containers"][0]
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


def test_ingest_is_sharded_by_camera(manifests):
    ingest = _one(manifests, "StatefulSet", "ingest")
    container = ingest["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert int(env["INGEST_SHARDS"]) == ingest["spec"]["replicas"]
    assert "--shard" in " ".join(container["args"]) and "--shards" in " ".join(container["args"])


def test_consumers_scale_up_to_the_partition_count(manifests):
    partitions = int(_one(manifests, "ConfigMap", "sparseinst-config")["data"]["KAFKA_PARTITIONS"])
    topics = " ".join(_one(manifests, "Job", "sparseinst-topics")["spec"]["template"]["spec"]["containers"][0]["args"])
    assert f"--partitions {partitions}" in topics
    consumers = _one(manifests, "Deployment", "consumers")
    hpa = _one(manifests, "HorizontalPodAutoscaler", "consumers")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "consumers"
    assert consumers["spec"]["replicas"] <= hpa["spec"]["maxReplicas"] <= partitions
