"""The whole configuration: one section per role, from a YAML file, overridden by VISIONSTREAM_* env vars."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from analytics.settings import AnalyticsSettings
from console.settings import ConsoleSettings
from inference.settings import InferenceSettings
from ingest.settings import IngestSettings
from sink.json_mirror import JsonMirrorSettings
from sink.settings import SinkSettings
from visionstream.settings import KafkaSettings, TopicSettings

ENV_PREFIX = "VISIONSTREAM_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """The configuration file or an override is invalid."""


def _level_name(value: str) -> str | None:
    level = str(value).strip().upper()
    return level if level in LOG_LEVELS else None


def log_level(value: str, what: str = "log_level") -> str:
    """`value` as a logging level name; ConfigError naming `what` if it is none."""
    level = _level_name(value)
    if level is None:
        raise ConfigError(f"invalid {what} {value!r}: use one of {', '.join(LOG_LEVELS)}")
    return level


class AppSettings(BaseSettings):
    """Precedence: command-line flags > VISIONSTREAM_<SECTION>__<KEY> env vars > the --config YAML file > defaults."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        # VISIONSTREAM_INGEST__STATE_DIR=null means None, as `null` does in the YAML file (not a folder "null")
        env_parse_none_str="null",
    )

    log_level: str = Field("INFO", description="Python logging level of the worker: DEBUG, INFO, WARNING or ERROR.")
    metrics_label_cap: int = Field(
        1000,
        ge=1,
        description="Most distinct camera ids (and detection labels) a worker exports as metric labels; the rest count as `_other`.",
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings, description="How to reach the brokers.")
    topics: TopicSettings = Field(default_factory=TopicSettings, description="Topic names and configs.")
    ingest: IngestSettings = Field(default_factory=IngestSettings, description="The ingest role.")
    inference: InferenceSettings = Field(default_factory=InferenceSettings, description="The inference role.")
    analytics: AnalyticsSettings = Field(default_factory=AnalyticsSettings, description="The analytics role.")
    sink: SinkSettings = Field(default_factory=SinkSettings, description="The sink role.")
    console: ConsoleSettings = Field(default_factory=ConsoleSettings, description="The operator's web console.")
    json_mirror: JsonMirrorSettings = Field(
        default_factory=JsonMirrorSettings, description="`visionstream export-json`: the JSON view of topics."
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = _level_name(value)
        if level is None:
            raise ValueError(f"use one of {', '.join(LOG_LEVELS)}")
        return level


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
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, path, overrides or {})) from exc
    except SettingsError as exc:  # an env var the settings could not parse at all (e.g. bad JSON)
        raise ConfigError(_unparsable_env(exc)) from exc


def _one_line(exc: ValidationError, path: Path | None, overrides: dict[str, Any]) -> str:
    """The first problem as `invalid setting KEY (from SOURCE): MESSAGE (got VALUE)`, plus how many more."""
    errors = exc.errors()
    first = errors[0]
    loc = [str(p) for p in first["loc"]]
    key = ".".join(loc)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    got = repr(first.get("input"))
    got = got if len(got) <= 80 else got[:77] + "..."
    shown = "" if first["type"] in ("missing", "extra_forbidden") else f" (got {got})"
    message = "unknown setting (misspelt?)" if first["type"] == "extra_forbidden" else first["msg"]
    message = message.removeprefix("Value error, ")
    return f"invalid setting {key} ({_source_of(loc, path, overrides)}): {message}{shown}{more}"


def _source_of(loc: list[str], path: Path | None, overrides: dict[str, Any]) -> str:
    """Where a key's value came from, by the precedence flags > env > file."""
    node: Any = overrides
    for part in loc:
        node = node.get(part) if isinstance(node, dict) else None
    if node is not None:
        return "command line"
    for depth in range(len(loc), 0, -1):  # the key's own env var, or one for a section above it (JSON)
        name = ENV_PREFIX + "__".join(loc[:depth]).upper()
        if name in os.environ:
            return f"env {name}"
    return f"file {path}" if path is not None else "defaults"


def _unparsable_env(exc: SettingsError) -> str:
    for name, value in sorted(os.environ.items()):
        if name.startswith(ENV_PREFIX) and value.lstrip()[:1] in ("{", "["):
            try:
                json.loads(value)
            except ValueError as bad:
                return f"invalid setting in env {name}: not valid JSON ({bad})"
    return f"invalid setting from the environment: {' '.join(str(exc).split())}"
