"""The compose file and the Kubernetes manifests, checked structurally (no Docker engine or cluster here)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
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


SECRET_MOUNTS = "/var/run/secrets/sparseinst"  # where the k8s pods mount the Secrets


@pytest.fixture(scope="module")
def secrets(tmp_path_factory) -> Path:
    """What deploy/make-secrets.sh makes, in a folder of its own."""
    out = tmp_path_factory.mktemp("deploy") / "secrets"
    run = subprocess.run(["bash", str(ROOT / "deploy" / "make-secrets.sh"), str(out)], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return out


@pytest.fixture(scope="module")
def k8s_settings(manifests, secrets, tmp_path_factory):
    """The ConfigMap's settings as a pod sees them: the Secrets of k8s-secrets.yaml mounted as its volumes."""
    from pipeline.config import load_settings

    mounts = tmp_path_factory.mktemp("mounts")
    for secret in yaml.safe_load_all((secrets / "k8s-secrets.yaml").read_text()):
        folder = {"sparseinst-kafka": "kafka", "sparseinst-triton-control": "triton"}[secret["metadata"]["name"]]
        (mounts / folder).mkdir()
        for key, value in secret["data"].items():
            (mounts / folder / key).write_bytes(base64.b64decode(value))
    text = _one(manifests, "ConfigMap", "sparseinst-config")["data"]["pipeline.yaml"]
    return load_settings(None, **yaml.safe_load(text.replace(SECRET_MOUNTS, str(mounts))))


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


def test_kafka_runs_the_secured_broker_script_with_a_health_check(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["entrypoint"][-1] == "/opt/sparseinst/start-broker.sh"
    assert "./deploy/kafka/start-broker.sh:/opt/sparseinst/start-broker.sh:ro" in kafka["volumes"]
    assert set(kafka["secrets"]) == {"kafka-admin.password", "kafka-pipeline.password", "kafka-broker.pem",
                                     "kafka-ca.pem"}  # fmt: skip
    health = " ".join(kafka["healthcheck"]["test"])
    assert "kafka-broker-api-versions" in health and "--command-config /tmp/sparseinst-kafka/admin.properties" in health
    script = (ROOT / "deploy" / "kafka" / "start-broker.sh").read_text()
    protocols = next(line for line in script.splitlines() if line.startswith("listener.security.protocol.map="))
    assert "PLAINTEXT" not in protocols.replace("SASL_PLAINTEXT", "")  # every listener authenticates
    assert "StandardAuthorizer" in script and "allow.everyone.if.no.acl.found=false" in script


def test_triton_is_the_ngc_image_with_a_gpu_and_waits_for_the_repository_build(compose):
    triton = compose["services"]["triton"]
    dockerfile = (ROOT / triton["build"]["dockerfile"]).read_text()
    assert "nvcr.io/nvidia/tritonserver:" in dockerfile
    assert _gpu_reserved(triton) and _gpu_reserved(compose["services"]["repository-builder"])
    assert triton["depends_on"]["repository-builder"]["condition"] == "service_completed_successfully"
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    assert "--model-repository=/models" in " ".join(triton["command"])
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


def test_the_app_commands_and_settings_are_valid(compose, manifests, k8s_settings):
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
    assert k8s_settings.cameras


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


def test_ingest_shards_match_replicas_and_every_shard_has_cameras(manifests, k8s_settings):
    from pipeline.apps.ingest import build_sources

    ingest = _one(manifests, "StatefulSet", "ingest")
    container = ingest["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    shards = int(env["INGEST_SHARDS"])
    assert shards == ingest["spec"]["replicas"]
    assert "--shard" in " ".join(container["args"]) and "--shards" in " ".join(container["args"])
    settings = k8s_settings
    assert all(build_sources(settings, shard=k, shards=shards) for k in range(shards))


def test_topics_have_one_owner_and_the_layout_the_apps_need(compose, manifests, k8s_settings):
    from pipeline.config import load_settings

    job = _one(manifests, "Job", "sparseinst-topics")["spec"]["template"]["spec"]["containers"][0]
    assert job["args"][:2] == ["topics", "create"] and compose["services"]["topics"]["command"][:2] == [
        "topics",
        "create",
    ]
    k8s = k8s_settings
    partitions = int(_one(manifests, "ConfigMap", "sparseinst-config")["data"]["KAFKA_PARTITIONS"])
    assert k8s.kafka.topics.partitions == partitions
    assert k8s.kafka.topics.replication == 3 and k8s.kafka.topics.min_insync_replicas == 2
    local = load_settings(ROOT / "deploy" / "pipeline.yaml")
    kafka_env = compose["services"]["kafka"]["environment"]
    assert local.kafka.topics.replication == 1 and kafka_env.get("NODE_ID", 1) == 1  # compose runs one broker
    for settings in (k8s, local):  # the apps check the topics; only the owner creates them
        assert settings.kafka.create_topics is False


def test_consumers_scale_up_to_the_partition_count_each_with_its_own_identity_and_sink(
    compose, manifests, k8s_settings
):
    partitions = int(_one(manifests, "ConfigMap", "sparseinst-config")["data"]["KAFKA_PARTITIONS"])
    consumers = _one(manifests, "StatefulSet", "consumers")
    hpa = _one(manifests, "HorizontalPodAutoscaler", "consumers")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "consumers"}
    assert consumers["spec"]["replicas"] <= hpa["spec"]["maxReplicas"] <= partitions
    container = consumers["spec"]["template"]["spec"]["containers"][0]
    pod_name = [e for e in container["env"] if e["name"] == "POD_NAME"]
    assert pod_name and pod_name[0]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"  # member id
    claims = {c["metadata"]["name"] for c in consumers["spec"]["volumeClaimTemplates"]}
    sink = k8s_settings.consumer.sink
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


def test_apps_expose_their_metrics(compose, manifests, k8s_settings):
    settings = k8s_settings
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


def test_triton_stays_inside_the_compose_network_and_only_the_controller_holds_the_control_key(compose):
    services = compose["services"]
    triton = services["triton"]
    assert "ports" not in triton
    command = " ".join(triton["command"])
    for option in ("--http-restricted-api", "--grpc-restricted-protocol"):
        assert f'{option}="model-repository:sparseinst-control-key=$$key"' in command
    assert 'key="$$(cat /run/secrets/triton-control.key)"' in command and triton["secrets"] == ["triton-control.key"]
    holders = {name for name, s in services.items() if "triton-control.key" in s.get("secrets", [])}
    assert holders == {"triton", "rollout-controller"}
    controller_env = services["rollout-controller"]["environment"]
    assert controller_env["SPARSEINST_TRITON__CONTROL_KEY_FILE"] == "/run/secrets/triton-control.key"
    assert set(compose["secrets"]) >= {"triton-control.key"}
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./deploy/secrets/")
    assert "/deploy/secrets/" in (ROOT / ".gitignore").read_text().split()


def test_every_compose_app_reaches_kafka_over_sasl_ssl_with_its_password_in_a_file(compose):
    apps = {n: s for n, s in compose["services"].items() if s.get("image") == "sparseinst-pipeline:latest"}
    assert set(apps) == {"topics", "ingest", "consumers", "rollout-controller"}
    for name, app in apps.items():
        env = app["environment"]
        assert env["SPARSEINST_KAFKA__SECURITY__PROTOCOL"] == "SASL_SSL", name
        assert "SPARSEINST_KAFKA__SECURITY__PASSWORD" not in env, name  # never the password itself
        password = env["SPARSEINST_KAFKA__SECURITY__PASSWORD_FILE"]
        assert password.removeprefix("/run/secrets/") in app["secrets"], name
        assert env["SPARSEINST_KAFKA__SECURITY__SSL_CAFILE"] == "/run/secrets/kafka-ca.pem", name
        user = env["SPARSEINST_KAFKA__SECURITY__USERNAME"]
        assert (user, password) == (("admin", "/run/secrets/kafka-admin.password") if name == "topics" else
                                    ("pipeline", "/run/secrets/kafka-pipeline.password")), name  # fmt: skip
    assert apps["topics"]["command"][-2:] == ["--grant", "pipeline"]  # the admin grants the pipeline's ACLs


def test_every_k8s_app_reaches_kafka_over_sasl_ssl_and_triton_restricts_model_control(manifests, k8s_settings):
    security = k8s_settings.kafka.security
    assert security.protocol == "SASL_SSL" and security.username == "pipeline" and security.password is None
    assert len(security.secret().get_secret_value()) == 32  # read from the mounted Secret
    pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in manifests
            if d["kind"] in ("Deployment", "StatefulSet", "Job")}  # fmt: skip
    for name in ("consumers", "ingest", "rollout-controller", "sparseinst-topics"):
        volumes = {v["name"]: v for v in pods[name]["volumes"]}
        assert volumes["kafka-secret"]["secret"]["secretName"] == "sparseinst-kafka", name
        mounts = {m["name"]: m["mountPath"] for m in pods[name]["containers"][0]["volumeMounts"]}
        assert mounts["kafka-secret"] == f"{SECRET_MOUNTS}/kafka", name
    args = pods["triton"]["containers"][0]["args"]
    for option in ("--http-restricted-api", "--grpc-restricted-protocol"):
        assert f"{option}=model-repository:sparseinst-control-key=$(TRITON_CONTROL_KEY)" in args
    env = {e["name"]: e for e in pods["triton"]["containers"][0]["env"]}
    assert env["TRITON_CONTROL_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "sparseinst-triton-control"
    holders = {n for n, p in pods.items()
               if "sparseinst-triton-control" in yaml.safe_dump(p)}  # fmt: skip
    assert holders == {"triton", "rollout-controller"}
    controller = {e["name"]: e.get("value") for e in pods["rollout-controller"]["containers"][0]["env"]}
    assert controller["SPARSEINST_TRITON__CONTROL_KEY_FILE"] == f"{SECRET_MOUNTS}/triton/key"


def test_make_secrets_keeps_what_exists_and_keeps_the_folder_private(secrets):
    assert oct(secrets.stat().st_mode & 0o777) == "0o700"
    for name in ("kafka-ca.key", "k8s-secrets.yaml"):
        assert oct((secrets / name).stat().st_mode & 0o777) == "0o600", name
    before = {p.name: p.read_bytes() for p in secrets.iterdir()}
    run = subprocess.run(["bash", str(ROOT / "deploy" / "make-secrets.sh"), str(secrets)], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert {p.name: p.read_bytes() for p in secrets.iterdir()} == before  # a second run changes nothing
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(secrets / "kafka-ca.pem"), "-verify_hostname",
                             "kafka", str(secrets / "kafka-broker.pem")], capture_output=True, text=True)  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.slow
def test_the_compose_broker_script_takes_only_authenticated_users_and_grants_the_pipelines_acls(secrets, tmp_path):
    """deploy/kafka/start-broker.sh run for real (on the project's Kafka jars, on loopback ports)."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from pipeline.errors import KafkaUnavailableError
    from pipeline.kafka.connection import KafkaConnection, KafkaSecurity, check_connection
    from pipeline.local.kafka import ensure_kafka_jars
    from pipeline.local.ports import free_port
    from pipeline.local.process import default_cache

    ports = {k: free_port("127.0.0.1") for k in ("PORT", "INTERNAL_PORT", "CONTROLLER_PORT")}
    env = dict(os.environ, KAFKA_LIBS=str(ensure_kafka_jars(default_cache() / "kafka-jars")), SECRETS=str(secrets),
               DATA=str(tmp_path / "data"), CONF=str(tmp_path / "conf"), ADVERTISED_HOST="localhost",
               BIND="127.0.0.1", HEAP_MB="384", PARTITIONS="2", **{k: str(v) for k, v in ports.items()})  # fmt: skip
    log = open(tmp_path / "broker.log", "wb")  # noqa: SIM115 - the broker's output, read on failure
    broker = subprocess.Popen(["bash", str(ROOT / "deploy" / "kafka" / "start-broker.sh")], env=env, stdout=log,
                              stderr=subprocess.STDOUT)  # fmt: skip
    bootstrap = f"localhost:{ports['PORT']}"

    def as_user(user: str, password_file: Path | None = None, password: str | None = None) -> KafkaConnection:
        return KafkaConnection(bootstrap=bootstrap, security=KafkaSecurity(
            protocol="SASL_SSL", username=user, password_file=password_file, password=password,
            ssl_cafile=secrets / "kafka-ca.pem"))  # fmt: skip

    try:
        admin_file = secrets / "kafka-admin.password"
        deadline = time.monotonic() + 90
        while True:
            try:
                check_connection(as_user("admin", admin_file), timeout_s=5)
                break
            except KafkaUnavailableError:
                assert broker.poll() is None and time.monotonic() < deadline, (tmp_path / "broker.log").read_text()
                time.sleep(1)
        for name in ("server.properties", "admin.properties"):
            assert oct((tmp_path / "conf" / name).stat().st_mode & 0o777) == "0o600"
        cmdline = Path(f"/proc/{broker.pid}/cmdline").read_bytes().decode()
        assert not any(
            (secrets / f).read_text() in cmdline for f in ("kafka-admin.password", "kafka-pipeline.password")
        )
        # the compose topics service: as the admin, create the topics and grant the pipeline's ACLs
        config = tmp_path / "admin.yaml"
        security = as_user("admin", admin_file).security.model_dump(mode="json", exclude_none=True)
        kafka = {"bootstrap": bootstrap, "detections_topic": "d", "events_topic": "e", "topics": {"partitions": 2}}
        config.write_text(yaml.safe_dump({"kafka": kafka | {"security": security}}))
        grant = [sys.executable, "-m", "pipeline", "topics", "create", "--config", str(config), "--grant", "pipeline"]
        topics = subprocess.run(grant, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert topics.returncode == 0 and "granted 6 ACLs to pipeline" in topics.stdout, topics.stderr[-2000:]
        pipeline = as_user("pipeline", secrets / "kafka-pipeline.password").client_args()
        producer = KafkaProducer(**pipeline)
        producer.send("d", b"hello", partition=0).get(timeout=30)
        producer.close()
        consumer = KafkaConsumer(**pipeline, auto_offset_reset="earliest", consumer_timeout_ms=15000)
        consumer.assign([TopicPartition("d", 0)])
        assert [m.value for m in consumer] == [b"hello"]
        consumer.close()
        with pytest.raises(KafkaUnavailableError):  # a wrong password
            check_connection(as_user("pipeline", password="guess"), timeout_s=10)
        for port in ports.values():  # no listener takes a plaintext client
            with pytest.raises(KafkaUnavailableError):
                check_connection(KafkaConnection(bootstrap=f"127.0.0.1:{port}"), timeout_s=5)
    finally:
        broker.kill()
        broker.wait()
        log.close()


def test_each_compose_app_reads_its_environment_into_the_settings_it_needs(compose, secrets, monkeypatch):
    """The containers' environment read by the settings loader itself (names that are not settings fail)."""
    from pipeline.config import load_settings

    for name, app in compose["services"].items():
        if app.get("image") != "sparseinst-pipeline:latest":
            continue
        with monkeypatch.context() as env:
            for key, value in app["environment"].items():  # the compose secrets, mounted where the file says
                env.setenv(key, str(value).replace("/run/secrets", str(secrets)))
            settings = load_settings(ROOT / "deploy" / "pipeline.yaml")
        security = settings.kafka.security
        assert settings.kafka.bootstrap == "kafka:9092" and security.protocol == "SASL_SSL", name
        assert security.secret().get_secret_value() == (secrets / Path(str(security.password_file)).name).read_text()
        assert security.ssl_cafile == secrets / "kafka-ca.pem"
        assert settings.triton.grpc_url == "triton:8001"
        key = settings.triton.key()
        assert (key is not None) == (name == "rollout-controller"), name
