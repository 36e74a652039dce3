"""Connection settings: one pydantic settings object, from a YAML file and ``SPARSEINST_*`` variables.

Precedence: explicit arguments > environment (``SPARSEINST_KAFKA__BOOTSTRAP=host:9092``,
``SPARSEINST_TRITON__GRPC_URL=host:8001``) > the YAML file > defaults. When Kafka or Triton is
configured here it is used as it is and nothing is started for it; otherwise ``up`` and the
demo start embedded ones on loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pipeline.errors import ConfigError
from pipeline.local.process import default_cache
from pipeline.serving import contract


class KafkaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bootstrap: str | None = Field(None, description="external cluster, host:port[,host:port]; unset = embedded")
    detections_topic: str = "detections"
    events_topic: str = "events"


class TritonSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grpc_url: str | None = Field(None, description="external server, host:port; unset = embedded")
    http_url: str | None = Field(None, description="its HTTP address (health checks, model control)")
    model_name: str = contract.ENSEMBLE
    model_version: str = Field("", description="explicit model version; empty = the server's version policy")
    timeout_s: float = Field(10.0, gt=0)


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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPARSEINST_", env_nested_delimiter="__", extra="forbid")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    triton: TritonSettings = Field(default_factory=TritonSettings)
    local: LocalSettings = Field(default_factory=LocalSettings)

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
