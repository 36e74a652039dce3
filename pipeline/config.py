"""Connection settings: one pydantic settings object, from a YAML file and ``SPARSEINST_*`` variables.

Precedence: explicit arguments > environment (``SPARSEINST_KAFKA__BOOTSTRAP=host:9092``,
``SPARSEINST_TRITON__GRPC_URL=host:8001``) > the YAML file > defaults. When Kafka or Triton is
configured here it is used as it is and nothing is started for it; otherwise ``up`` and the
demo start embedded ones on loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pipeline.errors import ConfigError
from pipeline.kafka.connection import KafkaConnection, KafkaSecurity
from pipeline.kafka.topics import Topics, TopicSpec
from pipeline.messages import FrameLimits
from pipeline.paths import default_cache
from pipeline.secret_files import not_both, value_or_file
from pipeline.serving import contract

TOPIC_NAME = r"^[A-Za-z0-9._-]{1,200}$"


class KafkaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bootstrap: str | None = Field(None, description="external cluster, host:port[,host:port]; unset = embedded")
    detections_topic: str = Field("detections", pattern=TOPIC_NAME)
    events_topic: str = Field("events", pattern=TOPIC_NAME)
    rollout_state_topic: str = Field("rollout.state", pattern=TOPIC_NAME, description="compacted: rollout state")
    shadow_topic: str = Field("rollout.shadow", pattern=TOPIC_NAME, description="live and candidate answers")
    archive_topic: str = Field("frames.archive", pattern=TOPIC_NAME, description="archived frames for replays")
    security: KafkaSecurity = Field(default_factory=KafkaSecurity)
    topics: TopicSpec = Field(default_factory=TopicSpec)
    create_topics: bool = Field(True, description="create missing topics at start; false where one owner "
                                "('sparseinst-pipeline topics create') made them")  # fmt: skip

    def connection(self, bootstrap: str | None = None) -> KafkaConnection:
        address = bootstrap or self.bootstrap
        if not address:
            raise ConfigError("kafka.bootstrap is not set and no embedded Kafka is running")
        return KafkaConnection(bootstrap=address, security=self.security)

    def topic_names(self) -> Topics:
        return Topics(detections=self.detections_topic, events=self.events_topic,
                      rollout_state=self.rollout_state_topic, shadow=self.shadow_topic,
                      archive=self.archive_topic)  # fmt: skip


class TritonSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grpc_url: str | None = Field(None, description="external server, host:port; unset = embedded")
    http_url: str | None = Field(None, description="its HTTP address (health checks, model control)")
    model_name: str = Field(contract.ENSEMBLE, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    model_version: str = Field("", pattern=r"^[0-9]*$", description="explicit version; empty = the server's policy")
    timeout_s: float = Field(10.0, gt=0, description="deadline of one request of JPEG frames")
    segment_timeout_s: float = Field(60.0, gt=0, description="deadline of one video segment (up to 32 frames)")
    retries: int = Field(12, ge=0, description="retries while the server is unavailable (backoff doubles to 5 s)")
    control_key: SecretStr | None = Field(None, description="key for the server's restricted model control")
    control_key_file: Path | None = Field(None, description="file holding control_key (instead of control_key)")

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, data: Any) -> Any:
        return not_both(data, "control_key", "control_key_file")

    def key(self) -> SecretStr | None:
        """The model-control key, read from ``control_key_file`` when it is needed."""
        return value_or_file(self.control_key, self.control_key_file, "triton.control_key_file", ConfigError)


class LocalSettings(BaseModel):
    """Where the embedded services keep their state, and what the embedded Triton serves."""

    model_config = ConfigDict(extra="forbid")

    state_dir: Path = Field(default_factory=lambda: default_cache() / "local")
    model_repository: Path | None = Field(None, description="unset: a CPU-profile repository built in state_dir")
    weights: Path | None = Field(None, description="checkpoint served by the built repository; unset = shipped")
    score_threshold: float = Field(0.3, ge=0.0, lt=1.0)

    @property
    def repository(self) -> Path:
        return self.model_repository or self.state_dir / "model_repository"


class CameraSettings(BaseModel):
    """One camera (``uri``: video file, stream URL or JPEG folder) or one synthetic vehicle (``synthetic_seed``)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="camera id (key of its messages); required with uri")
    uri: str | None = None
    vehicle_id: str | None = None
    realtime: bool | None = Field(None, description="pace and drop-oldest; default: true for streams only")
    synthetic_seed: int | None = None
    cameras: int = Field(4, ge=1, le=4, description="synthetic: cameras of the vehicle")
    seconds: float = Field(60.0, gt=0, description="synthetic: length of the drive")
    fps: float = Field(10.0, gt=0)
    # A segment starts at a keyframe, so a live camera's frame-to-event latency is at least this long.
    transport: Literal["segments", "jpeg"] = Field(
        "segments", description="video: send encoded segments (decoded in Triton) or decode here and send JPEG frames"
    )
    max_segment_s: float = Field(1.0, gt=0, le=10, description="video: longest segment of an all-keyframe codec "
                                 "(MJPEG); other codecs are cut at each keyframe (keep the camera's GOP at or under "
                                 "this and under 32 frames)")  # fmt: skip

    @model_validator(mode="after")
    def _one_kind(self) -> CameraSettings:
        if (self.uri is None) == (self.synthetic_seed is None):
            raise ValueError("give either uri (a real camera) or synthetic_seed (a simulated vehicle)")
        if self.uri is not None and not self.id:
            raise ValueError("a camera with a uri needs an id")
        if self.synthetic_seed is not None and not (self.vehicle_id or self.id):
            raise ValueError("a synthetic vehicle needs a vehicle_id")
        return self


class IngestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_batch: int = Field(8, ge=1, le=contract.MAX_BATCH, description="frames per Triton request")
    budget: int = Field(4, ge=1, description="frames a camera may have waiting; live cameras drop the oldest")
    in_flight: int = Field(2, ge=1, description="requests at Triton at once")
    speed: float = Field(1.0, gt=0, description="pacing speed for recorded sources played in real time")
    max_message_bytes: int = Field(900_000, ge=10_000, lt=1_048_576)
    follow_rollout: bool = Field(True, description="route cameras and shadow frames by the rollout state in Kafka")
    archive_every: int = Field(0, ge=0, description="keep every n-th published frame in the frame archive for "
                               "replays (1 = all, which replays need to reproduce events; 0 = off)")  # fmt: skip


class ConsumerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: Path | None = Field(None, description="zones/lines/rules YAML; none = tracks, health and alerts only")
    group_id: str = Field("sparseinst-events", pattern=TOPIC_NAME)
    member_id: str | None = Field(
        None,
        pattern=TOPIC_NAME,
        description="this member's name (its transactional id is group_id.member_id); unset = POD_NAME, else "
        "host and process id. A stable name lets a restarted member abort its own open transaction at once",
    )
    sink: Path | None = Field(
        Path("runs/events-{member}.sqlite"),
        description="SQLite file of this member's events ('{member}' becomes the member id: one file per replica)",
    )
    session_timeout_s: float = Field(15.0, ge=6.0, le=300.0, description="a member silent this long leaves the group")
    transaction_timeout_s: float = Field(60.0, ge=1.0, le=900.0, description="a dead member's open transaction is "
                                         "aborted by the broker after this")  # fmt: skip
    max_poll_records: int = Field(64, ge=1, le=10_000, description="records per poll, and so per transaction: "
                                  "more is fewer commits (throughput), fewer is earlier events (latency)")  # fmt: skip
    limits: FrameLimits = Field(default_factory=FrameLimits, description="what one detections message may hold; "
                                "past it the message is dead-lettered (reason 'out of bounds')")  # fmt: skip
    camera_ttl_s: float = Field(3600.0, gt=0, description="a camera without messages this long is forgotten: its "
                                "open tracks end and its state is tombstoned")  # fmt: skip
    stream_takeover_s: float = Field(60.0, gt=0, description="a camera whose stream sent nothing this long while "
                                     "an older stream epoch keeps coming takes the older one as its new stream (a "
                                     "source restarted on a host whose clock is behind)")  # fmt: skip

    def sink_path(self, member: str) -> Path | None:
        return Path(str(self.sink).replace("{member}", member)) if self.sink else None


class MetricsSettings(BaseModel):
    """The Prometheus endpoint of ``run`` and ``consume`` (``/metrics``)."""

    model_config = ConfigDict(extra="forbid")

    address: str = Field("127.0.0.1", description="0.0.0.0 to be scraped from other hosts (in a pod)")
    port: int | None = Field(None, ge=0, le=65535, description="unset = no endpoint; 0 = a free port")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPARSEINST_", env_nested_delimiter="__", extra="forbid")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    triton: TritonSettings = Field(default_factory=TritonSettings)
    local: LocalSettings = Field(default_factory=LocalSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    cameras: list[CameraSettings] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``path`` (YAML), then the environment, then ``overrides``; errors name the field."""
    file_data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"settings file not found: {path}")
        try:
            file_data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(file_data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        env_only = Settings().model_dump(exclude_unset=True)
        return Settings(**_merge(_merge(file_data, env_only), overrides))
    except ValidationError as exc:
        where = f" in {path}" if path else ""
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings{where}: {problems}") from None
