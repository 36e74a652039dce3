"""A single-node Apache Kafka broker (KRaft, combined broker + controller) from Maven Central jars.

The jars are resolved once with Maven from ``deploy/kafka/pom.xml`` into a cache folder; the
broker runs on the JDK, on loopback, on free ports, with its data and log in a folder of its own.
"""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
import uuid
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from pipeline.local.ports import free_port, port_open, wait_until
from pipeline.local.process import REPO_ROOT, LocalService, ServiceError, default_cache

log = logging.getLogger(__name__)

POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"


class LocalKafkaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jars_dir: Path = Field(default_factory=lambda: default_cache() / "kafka-jars")
    data_dir: Path | None = Field(None, description="broker data and logs; a temporary folder when unset")
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port")
    heap_mb: int = Field(512, ge=128)
    partitions: int = Field(4, ge=1, description="default partitions of auto-created topics")
    startup_timeout_s: float = Field(90.0, gt=0)


def ensure_kafka_jars(jars_dir: Path) -> Path:
    """Resolve the broker jars with Maven into ``jars_dir`` unless they are there already."""
    if any(jars_dir.glob("kafka_2.13-*.jar")):
        return jars_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError("Maven (mvn) is needed once to fetch the Kafka jars; install it or set SPARSEINST_CACHE")
    if not POM.is_file():
        raise ServiceError(f"Kafka pom not found at {POM}")
    log.info("resolving Kafka jars into %s (once)", jars_dir)
    jars_dir.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
           f"-DoutputDirectory={jars_dir}", "-DincludeScope=runtime"]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0 or not any(jars_dir.glob("kafka_2.13-*.jar")):
        raise ServiceError(f"Maven could not resolve the Kafka jars:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    return jars_dir


class LocalKafka(LocalService):
    """Start with :meth:`start` (or as a context manager); ``bootstrap`` is ``host:port``."""

    name = "kafka"

    def __init__(self, config: LocalKafkaConfig | None = None) -> None:
        super().__init__()
        self.config = config or LocalKafkaConfig()
        self.port = self.config.port
        self.data_dir = self.config.data_dir

    @property
    def bootstrap(self) -> str:
        return f"{self.config.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "broker.log"

    def _properties(self, controller_port: int) -> str:
        c, host = self.config, self.config.host
        assert self.data_dir is not None
        return "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{host}:{controller_port}",
            f"listeners=PLAINTEXT://{host}:{self.port},CONTROLLER://{host}:{controller_port}",
            f"advertised.listeners=PLAINTEXT://{host}:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.data_dir / 'data'}",
            f"num.partitions={c.partitions}",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "message.max.bytes=8388608",
        ]) + "\n"  # fmt: skip

    def _java(self, *args: str, heap: bool = False) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise ServiceError("a Java runtime (java, 17 or newer) is needed to run the Kafka broker")
        jars = ensure_kafka_jars(self.config.jars_dir)
        log4j = self.data_dir / "log4j.properties"  # type: ignore[operator]
        opts = [f"-Xmx{self.config.heap_mb}m", f"-Xms{min(self.config.heap_mb, 256)}m"] if heap else ["-Xmx256m"]
        return [java, *opts, f"-Dlog4j.configuration=file:{log4j}", "-cp", f"{jars}/*", *args]

    def start(self) -> LocalKafka:
        self.data_dir = self.scratch_dir(self.data_dir)
        self.port = self.port or free_port(self.config.host)
        props = self.data_dir / "server.properties"
        props.write_text(self._properties(free_port(self.config.host)))
        (self.data_dir / "log4j.properties").write_text(
            "log4j.rootLogger=INFO, file\nlog4j.appender.file=org.apache.log4j.FileAppender\n"
            f"log4j.appender.file.File={self.log_path}\nlog4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        )
        if not (self.data_dir / "data" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            fmt = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
                capture_output=True, text=True,
            )  # fmt: skip
            if fmt.returncode != 0:
                raise ServiceError(f"formatting Kafka storage failed: {fmt.stderr[-2000:] or fmt.stdout[-2000:]}")
        out = open(self.data_dir / "broker.stdout", "ab")  # noqa: SIM115 - owned by the child process
        self.spawn(self._java("kafka.Kafka", str(props), heap=True), out)
        log.info("starting Kafka on %s (data in %s)", self.bootstrap, self.data_dir)
        try:
            wait_until(self._ready, timeout_s=self.config.startup_timeout_s, what=f"Kafka on {self.bootstrap}",
                       alive=self.alive)  # fmt: skip
        except (RuntimeError, TimeoutError) as exc:
            tail = self.log_path.read_text()[-3000:] if self.log_path.exists() else ""
            self.stop()
            raise ServiceError(f"{exc}; broker log tail:\n{tail}") from exc
        return self

    def _ready(self) -> bool:
        from kafka import KafkaAdminClient

        if not port_open(self.config.host, self.port):  # cheap check first: avoids client reconnect backoff
            return False
        admin = KafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=5000, client_id="readiness",
            reconnect_backoff_ms=100, reconnect_backoff_max_ms=500,
        )  # fmt: skip
        try:
            admin.describe_cluster()
            return True
        finally:
            admin.close()
