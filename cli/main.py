"""The `visionstream` command: the parser made of the command families in cli/commands/, settings, logging, and
one line (never a traceback) for the errors a user can act on."""

from __future__ import annotations

import argparse
import faulthandler
import functools
import logging
import signal
import sys
from typing import Any

from cli.commands import EXIT_FAILED, EXIT_USAGE, demo, modelloop, operate, queries, roles
from cli.config import ConfigError, load_settings, log_level

log = logging.getLogger("visionstream")


def _common_options(suppress: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name (after it, they default to nothing, so a value
    given before the command name is not overwritten)."""
    common = argparse.ArgumentParser(add_help=False)
    default: Any = argparse.SUPPRESS if suppress else None
    common.add_argument(
        "--config", "-c", metavar="FILE", default=default, help="YAML settings file (env VISIONSTREAM_* overrides it)"
    )
    common.add_argument(
        "--log-level", default=default, help="DEBUG, INFO, WARNING or ERROR (default: settings log_level)"
    )
    common.add_argument(
        "--kafka-log-level",
        default=default,
        help="level of the Kafka client's own logs (default: WARNING; DEBUG to debug)",
    )
    return common


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="visionstream",
        description="Real-time image recognition on Apache Kafka.",
        parents=[_common_options(suppress=False)],
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # every subcommand takes the common options too: `visionstream ingest --config F` as well as the other order
    common = _common_options(suppress=True)
    sub.add_parser = functools.partial(sub.add_parser, parents=[common])  # type: ignore[method-assign]
    operate.register(sub, common)
    roles.register(sub)
    queries.register(sub, common)
    modelloop.register(sub)
    demo.register(sub)
    return p


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Command-line flags as settings overrides (flags given only)."""
    mapping = {"bootstrap_servers": ("kafka", "bootstrap_servers"), **getattr(args, "flag_settings", {})}
    out: dict[str, Any] = {}
    for attr, (section, key) in mapping.items():
        value = getattr(args, attr, None)
        if value is not None:
            out.setdefault(section, {})[key] = value
    if getattr(args, "db", None):
        out.setdefault("sink", {})["store"] = {"type": "sqlite", "path": args.db}
    return out


def _configure_logging(level: str, kafka_level: str | None = None) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # httpx (the console's calls to the sink and the probes) logs every request at INFO.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    # kafka-python narrates every connection at INFO.
    kafka = logging.getLogger("kafka")
    kafka.setLevel(kafka_level.upper() if kafka_level else max(logging.WARNING, logging.getLogger().level))
    if kafka_level:
        kafka.addHandler(logging.StreamHandler(sys.stderr))  # below the root's level too
        kafka.propagate = False
        kafka.handlers[-1].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config, _overrides(args))
        level = log_level(args.log_level or settings.log_level, "--log-level")
        kafka_level = log_level(args.kafka_log_level, "--kafka-log-level") if args.kafka_log_level else None
    except ConfigError as exc:
        print(f"visionstream: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _configure_logging(level, kafka_level)
    # `kill -USR1 PID` prints every thread's stack to stderr: how an operator sees where a stuck worker waits
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    from visionstream.metrics import set_label_cap

    set_label_cap(settings.metrics_label_cap)
    try:
        return int(args.run(args, settings))
    except KeyboardInterrupt:
        return EXIT_FAILED
    except Exception as exc:
        code = _known_error_code(exc)
        if code is None:
            raise
        from cli.broker import LocalKafkaError
        from cli.registry import LocalRegistryError
        from visionstream.faults import describe

        # one line, except the local broker's or registry's start-up failure, which shows the tail of its log
        message = describe(exc) if _is_kafka_error(exc) else str(exc)
        if not isinstance(exc, LocalKafkaError | LocalRegistryError):
            message = " ".join(message.split())
        print(f"visionstream {args.command}: error: {message}", file=sys.stderr)
        return code


def _is_kafka_error(exc: Exception) -> bool:
    from kafka.errors import KafkaError

    return isinstance(exc, KafkaError)


def _known_error_code(exc: Exception) -> int | None:
    from analytics.tracking import TrackerMissingError
    from cli.broker import LocalKafkaError
    from cli.models import ModelFetchError
    from cli.registry import LocalRegistryError
    from inference.detectors import ModelLoadError
    from inference.recognition.faces import FaceModelError
    from ingest.sources import SourceError
    from schemas.registry import SchemaRegistryError
    from sink.stores import StoreUnavailableError
    from visionstream.faults import KafkaFatalError
    from visionstream.kafka import BrokerUnavailableError
    from visionstream.metrics import MetricsPortError

    if isinstance(exc, ConfigError | ValueError):
        return EXIT_USAGE
    if _is_kafka_error(exc):  # one the roles' classification did not wrap: still one line, never a traceback
        return EXIT_FAILED
    if isinstance(
        exc,
        SourceError
        | BrokerUnavailableError
        | KafkaFatalError
        | ModelLoadError
        | FaceModelError
        | LocalKafkaError
        | LocalRegistryError
        | SchemaRegistryError
        | TimeoutError
        | MetricsPortError
        | StoreUnavailableError
        | TrackerMissingError
        | ModelFetchError,
    ):
        return EXIT_FAILED
    return None


if __name__ == "__main__":
    sys.exit(main())
