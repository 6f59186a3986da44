"""The whole configuration: one section per role, from a YAML file, overridden by VISIONSTREAM_* env vars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from inference.settings import InferenceSettings
from ingest.settings import IngestSettings
from sink.settings import SinkSettings
from visionstream.settings import KafkaSettings, TopicSettings


class ConfigError(ValueError):
    """The configuration file or an override is invalid."""


class AppSettings(BaseSettings):
    """Precedence: command-line flags > VISIONSTREAM_<SECTION>__<KEY> env vars > the --config YAML file > defaults."""

    model_config = SettingsConfigDict(
        env_prefix="VISIONSTREAM_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    log_level: str = Field("INFO", description="Python logging level of the worker.")
    metrics_label_cap: int = Field(
        1000,
        ge=1,
        description="Most distinct camera ids (and detection labels) a worker exports as metric labels; the rest count as `_other`.",
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings, description="How to reach the brokers.")
    topics: TopicSettings = Field(default_factory=TopicSettings, description="Topic names and configs.")
    ingest: IngestSettings = Field(default_factory=IngestSettings, description="The ingest role.")
    inference: InferenceSettings = Field(default_factory=InferenceSettings, description="The inference role.")
    sink: SinkSettings = Field(default_factory=SinkSettings, description="The sink role.")


def load_settings(config_file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> AppSettings:
    """Build the settings; every problem is a ConfigError naming the file or key at fault."""
    path = Path(config_file) if config_file else None
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(loaded).__name__}")

    class _FromFile(AppSettings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources = [init_settings, env_settings]
            if path is not None:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
            return tuple(sources)

    try:
        return _FromFile(**(overrides or {}))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        where = f" (file {path})" if path else ""
        raise ConfigError(f"invalid configuration{where}:\n{exc}") from exc
