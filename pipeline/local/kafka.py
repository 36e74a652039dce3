"""A single-node Apache Kafka broker (KRaft, combined broker + controller) from Maven Central jars.

The jars are resolved once with Maven from ``deploy/kafka/pom.xml`` into a cache folder; the
broker runs on the JDK, on loopback, on free ports, with its data and log in a folder of its own.
"""

from __future__ import annotations

import base64
import logging
import secrets
import shutil
import subprocess
import uuid
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from pipeline.kafka.connection import KafkaConnection, KafkaSecurity
from pipeline.local.ports import free_port, port_open, wait_until
from pipeline.local.process import REPO_ROOT, LocalService, ServiceError, default_cache

log = logging.getLogger(__name__)

# the brokers' own principal on a secured broker: inter-broker and controller traffic, and the one super user
BROKER_USER = "kafka-broker"

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
    # security of the client listener: SCRAM users (made when the storage is formatted) and/or TLS
    scram_users: dict[str, SecretStr] = Field(default_factory=dict, description="user -> password (SCRAM-SHA-512)")
    tls_keystore: Path | None = Field(None, description="PEM with the server's key and certificate chain")
    tls_ca: Path | None = Field(None, description="the CA clients should trust (for client_connection)")
    pipeline_users: list[str] | None = Field(
        None, description="SCRAM users granted the pipeline's ACLs; unset = all of them (others get no access)"
    )
    broker_password: SecretStr | None = Field(
        None, description="the brokers' own password (shared by a cluster's nodes); unset = made once per data folder"
    )
    # a node of a cluster (LocalKafkaCluster fills these in)
    node_id: int = Field(1, ge=1)
    controller_port: int = Field(0, ge=0, le=65535)
    internal_port: int = Field(0, ge=0, le=65535, description="broker-to-broker listener (secured client one)")
    quorum_voters: str | None = Field(None, description="id@host:port,...; unset = this node alone")
    cluster_id: str | None = None
    replication: int = Field(1, ge=1, description="replication of internal topics and the default for new topics")
    min_insync_replicas: int = Field(1, ge=1)

    @property
    def client_protocol(self) -> str:
        tls = self.tls_keystore is not None
        if self.scram_users:
            return "SASL_SSL" if tls else "SASL_PLAINTEXT"
        return "SSL" if tls else "PLAINTEXT"


# every artifact the pom names directly (a cache resolved from an older pom lacks some)
REQUIRED_JARS = ("kafka_2.13-*.jar", "kafka-storage-*.jar", "kafka-tools-*.jar")


def _jars_present(jars_dir: Path) -> bool:
    return all(any(jars_dir.glob(pattern)) for pattern in REQUIRED_JARS)


def ensure_kafka_jars(jars_dir: Path) -> Path:
    """Resolve the broker jars (and Kafka's command-line tools) with Maven into ``jars_dir`` unless they are there."""
    if _jars_present(jars_dir):
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
    if run.returncode != 0 or not _jars_present(jars_dir):
        raise ServiceError(f"Maven could not resolve the Kafka jars:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")
    return jars_dir


def _jaas_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _kept_secret(path: Path) -> str:
    """A random secret kept in ``path`` (readable by this user only), made on first use."""
    if path.is_file():
        return path.read_text().strip()
    path.touch(mode=0o600)
    path.write_text(secrets.token_urlsafe(24))
    return path.read_text().strip()


def new_cluster_id() -> str:
    """A random cluster id as Kafka makes them: URL-safe base64 of a UUID, never starting with '-'
    (the storage tool would read such an id as an option)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


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

    def client_connection(self, user: str | None = None, password: str | None = None) -> KafkaConnection:
        """How a client reaches this broker: its protocol, the CA, and a user's credentials (the first by default)."""
        c = self.config
        security: dict = {"protocol": c.client_protocol}
        if c.scram_users:
            user = user or next(iter(c.scram_users))
            known = self._users().get(user)
            security |= {
                "sasl_mechanism": "SCRAM-SHA-512",
                "username": user,
                "password": password if password is not None else known.get_secret_value() if known else "",
            }
        if c.tls_keystore is not None and c.tls_ca is not None:
            security["ssl_cafile"] = c.tls_ca
        return KafkaConnection(bootstrap=self.bootstrap, security=KafkaSecurity(**security))

    def _users(self) -> dict[str, SecretStr]:
        """Every SCRAM user the storage is formatted with: the configured ones and the brokers' own."""
        c = self.config
        if not c.scram_users:
            return {}
        assert c.broker_password is not None, "prepare() sets the broker password"
        return {**c.scram_users, BROKER_USER: c.broker_password}

    def _properties(self) -> str:
        c, host = self.config, self.config.host
        assert self.data_dir is not None
        listeners = [f"CLIENT://{host}:{self.port}", f"CONTROLLER://{host}:{c.controller_port}"]
        advertised = [f"CLIENT://{host}:{self.port}"]
        lines = [
            "process.roles=broker,controller",
            f"node.id={c.node_id}",
            f"controller.quorum.voters={c.quorum_voters or f'{c.node_id}@{host}:{c.controller_port}'}",
            "controller.listener.names=CONTROLLER",
            f"log.dirs={self.data_dir / 'data'}",
            f"num.partitions={c.partitions}",
            f"default.replication.factor={c.replication}",
            f"min.insync.replicas={c.min_insync_replicas}",
            f"offsets.topic.replication.factor={c.replication}",
            f"transaction.state.log.replication.factor={c.replication}",
            f"transaction.state.log.min.isr={min(c.min_insync_replicas, c.replication)}",
            "transaction.abort.timed.out.transaction.cleanup.interval.ms=2000",
            # a killed node is fenced (its leaderships and coordinators move) after 4 s rather than 9
            "broker.session.timeout.ms=4000",
            "broker.heartbeat.interval.ms=1000",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "message.max.bytes=8388608",
        ]
        if c.scram_users:
            # Every listener authenticates. Brokers reach each other on a listener of their own (SCRAM, as the
            # brokers' user) and the controllers over PLAIN (KRaft controllers cannot check SCRAM: the
            # credentials live in the metadata they serve). The authorizer denies what no ACL allows.
            listeners.append(f"INTERNAL://{host}:{c.internal_port}")
            advertised.append(f"INTERNAL://{host}:{c.internal_port}")
            protocols = f"CLIENT:{c.client_protocol},INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
            password = _jaas_quote(self._users()[BROKER_USER].get_secret_value())
            scram = "org.apache.kafka.common.security.scram.ScramLoginModule required"
            plain = "org.apache.kafka.common.security.plain.PlainLoginModule required"
            lines += [
                "inter.broker.listener.name=INTERNAL",
                "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
                "sasl.mechanism.controller.protocol=PLAIN",
                "listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512",
                f"listener.name.client.scram-sha-512.sasl.jaas.config={scram};",
                "listener.name.internal.sasl.enabled.mechanisms=SCRAM-SHA-512",
                f'listener.name.internal.scram-sha-512.sasl.jaas.config={scram} username="{BROKER_USER}" '
                f'password="{password}";',
                "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
                f'listener.name.controller.plain.sasl.jaas.config={plain} username="{BROKER_USER}" '
                f'password="{password}" user_{BROKER_USER}="{password}";',
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                f"super.users=User:{BROKER_USER}",
                "allow.everyone.if.no.acl.found=false",
            ]
        elif c.tls_keystore is not None:  # TLS alone: brokers talk to each other on a plain loopback listener
            listeners.append(f"INTERNAL://{host}:{c.internal_port}")
            advertised.append(f"INTERNAL://{host}:{c.internal_port}")
            protocols = f"CLIENT:{c.client_protocol},INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
            lines.append("inter.broker.listener.name=INTERNAL")
        else:
            protocols = "CLIENT:PLAINTEXT,CONTROLLER:PLAINTEXT"
            lines.append("inter.broker.listener.name=CLIENT")
        lines += [f"listeners={','.join(listeners)}", f"advertised.listeners={','.join(advertised)}",
                  f"listener.security.protocol.map={protocols}"]  # fmt: skip
        if c.tls_keystore is not None:
            lines += ["ssl.keystore.type=PEM", f"ssl.keystore.location={c.tls_keystore}", "ssl.client.auth=none"]
        return "\n".join(lines) + "\n"

    def _java(self, *args: str, heap: bool = False) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise ServiceError("a Java runtime (java, 17 or newer) is needed to run the Kafka broker")
        jars = ensure_kafka_jars(self.config.jars_dir)
        log4j = self.data_dir / "log4j.properties"  # type: ignore[operator]
        opts = [f"-Xmx{self.config.heap_mb}m", f"-Xms{min(self.config.heap_mb, 256)}m"] if heap else ["-Xmx256m"]
        return [java, *opts, f"-Dlog4j.configuration=file:{log4j}", "-cp", f"{jars}/*", *args]

    def tool_command(self, main_class: str, *args: str) -> list[str]:
        """A command running one of Kafka's own tools (``org.apache.kafka.tools.consumer.ConsoleConsumer``,
        ...) from the broker's jars, with this broker's logging; the caller adds ``--bootstrap-server``."""
        return self._java(main_class, *args)

    def start(self) -> LocalKafka:
        self.prepare()
        self.launch()
        self.wait_ready()
        self.grant_acls()
        return self

    def grant_acls(self) -> None:
        """On a secured broker, grant the pipeline's ACLs to its users (as the brokers' super user)."""
        from kafka import KafkaAdminClient

        from pipeline.kafka.acls import grant_pipeline

        c = self.config
        if not c.scram_users:
            return
        admin = KafkaAdminClient(**self.client_connection(BROKER_USER).client_args(), request_timeout_ms=10000)
        try:
            users = list(c.scram_users) if c.pipeline_users is None else c.pipeline_users
            log.info("granted %d pipeline ACLs to %s", grant_pipeline(admin, users), ", ".join(users))
        finally:
            admin.close()

    def prepare(self) -> None:
        """Ports, properties and formatted storage (kept from an earlier run in the same data folder)."""
        c = self.config
        self.data_dir = self.scratch_dir(self.data_dir)
        self.port = self.port or free_port(c.host)
        fill: dict = {k: free_port(c.host) for k in ("controller_port", "internal_port") if not getattr(c, k)}
        if c.scram_users and c.broker_password is None:
            fill["broker_password"] = SecretStr(_kept_secret(self.data_dir / "broker.secret"))
        self.config = c = c.model_copy(update=fill)
        props = self.data_dir / "server.properties"
        props.touch(mode=0o600)  # it holds the brokers' password on a secured broker
        props.write_text(self._properties())
        (self.data_dir / "log4j.properties").write_text(
            "log4j.rootLogger=INFO, file\nlog4j.appender.file=org.apache.log4j.FileAppender\n"
            f"log4j.appender.file.File={self.log_path}\nlog4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        )
        if not (self.data_dir / "data" / "meta.properties").exists():
            fmt = subprocess.run(self._format_command(props), capture_output=True, text=True)
            (self.data_dir / "format.args").unlink(missing_ok=True)
            if fmt.returncode != 0:
                raise ServiceError(f"formatting Kafka storage failed: {fmt.stderr[-2000:] or fmt.stdout[-2000:]}")

    def _format_command(self, props: Path) -> list[str]:
        """The storage tool's command. SCRAM users exist from the first start (KRaft keeps them in the
        metadata log); their passwords go in a Java argument file readable by this user only, never on
        the command line, where any process on the host could read them (``ps``)."""
        c = self.config
        assert self.data_dir is not None
        args = ["format", "-t", c.cluster_id or new_cluster_id(), "-c", str(props)]
        for user, password in self._users().items():
            args += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password.get_secret_value()}]"]
        argfile = self.data_dir / "format.args"
        argfile.touch(mode=0o600)
        quoted = ('"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"' for a in args)  # the launcher's escapes
        argfile.write_text("kafka.tools.StorageTool\n" + "\n".join(quoted) + "\n")
        return self._java(f"@{argfile}")

    def launch(self) -> None:
        """Start the broker process on the prepared folder (also to restart it after :meth:`kill`)."""
        assert self.data_dir is not None
        out = open(self.data_dir / "broker.stdout", "ab")  # noqa: SIM115 - owned by the child process
        self.spawn(self._java("kafka.Kafka", str(self.data_dir / "server.properties"), heap=True), out)
        log.info("starting Kafka node %d on %s (data in %s)", self.config.node_id, self.bootstrap, self.data_dir)

    def wait_ready(self) -> None:
        try:
            wait_until(self._ready, timeout_s=self.config.startup_timeout_s, what=f"Kafka on {self.bootstrap}",
                       alive=self.alive)  # fmt: skip
        except (RuntimeError, TimeoutError) as exc:
            tail = self.log_path.read_text()[-3000:] if self.log_path.exists() else ""
            self.stop()
            raise ServiceError(f"{exc}; broker log tail:\n{tail}") from exc

    def _ready(self) -> bool:
        return self.config.node_id in self.unfenced_brokers()

    def unfenced_brokers(self) -> set[int]:
        """The brokers this node's metadata lists as registered and unfenced (empty while it is down)."""
        from kafka import KafkaAdminClient

        if not port_open(self.config.host, self.port):  # cheap check first: avoids client reconnect backoff
            return set()
        who = BROKER_USER if self.config.scram_users else None  # the pipeline's users may not describe the cluster
        admin = KafkaAdminClient(
            **self.client_connection(who).client_args(), request_timeout_ms=5000, client_id="readiness",
            reconnect_backoff_ms=100, reconnect_backoff_max_ms=500,
        )  # fmt: skip
        try:
            brokers = admin.describe_cluster()["brokers"]
            return {b.get("broker_id", b.get("node_id")) for b in brokers if not b.get("is_fenced")}
        finally:
            admin.close()


class LocalKafkaCluster:
    """``size`` combined broker+controller nodes on loopback: one KRaft quorum, replicated topics.

    ``bootstrap`` lists every node; :meth:`kill` and :meth:`restart` take one node down (SIGKILL) and
    back up on the same ports and data, as a crashed and restarted broker.
    """

    def __init__(self, size: int = 3, *, min_insync_replicas: int = 2, data_dir: Path | None = None,
                 heap_mb: int = 384, partitions: int = 4) -> None:  # fmt: skip
        host = "127.0.0.1"
        controllers = [free_port(host) for _ in range(size)]
        voters = ",".join(f"{i + 1}@{host}:{p}" for i, p in enumerate(controllers))
        cluster_id = new_cluster_id()
        self.nodes = [
            LocalKafka(LocalKafkaConfig(
                node_id=i + 1, controller_port=controllers[i], quorum_voters=voters, cluster_id=cluster_id,
                replication=size, min_insync_replicas=min_insync_replicas, heap_mb=heap_mb, partitions=partitions,
                data_dir=data_dir / f"node-{i + 1}" if data_dir else None,
            ))
            for i in range(size)
        ]  # fmt: skip

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    def start(self) -> LocalKafkaCluster:
        for n in self.nodes:
            n.prepare()
        for n in self.nodes:  # a quorum needs a majority up before any node is ready
            n.launch()
        try:
            for n in self.nodes:
                n.wait_ready()
            self.wait_converged()
        except ServiceError:
            self.stop()
            raise
        return self

    def wait_converged(self, timeout_s: float = 60) -> None:
        """Wait until every node's metadata lists every node unfenced.

        A node is ready once it is registered, but the others learn of it a moment later; a client
        that bootstraps from a node that has not yet can be pointed (as the controller, say) at a
        broker its metadata does not know.
        """
        everyone = {n.config.node_id for n in self.nodes}
        for n in self.nodes:
            try:
                wait_until(lambda n=n: n.unfenced_brokers() >= everyone, timeout_s=timeout_s, alive=n.alive,
                           what=f"Kafka on {n.bootstrap} seeing all {len(everyone)} brokers")  # fmt: skip
            except (RuntimeError, TimeoutError) as exc:
                raise ServiceError(str(exc)) from exc

    def kill(self, node: int) -> None:
        self.nodes[node].kill()

    def restart(self, node: int) -> None:
        self.nodes[node].launch()
        self.nodes[node].wait_ready()
        self.wait_converged()

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()

    def __enter__(self) -> LocalKafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
