"""The `visionstream` subcommands, one module per family. Each module's `register(sub, common)` adds its parsers,
and each parser names the function that runs it (`run(args, settings) -> exit code`) and, in `flag_settings`, the
settings its own flags override. Parsing imports no role: a command's module imports what it runs when it runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

# flag name -> (settings section, key)
FlagSettings = dict[str, tuple[str, str]]
Runner = Callable[[argparse.Namespace, Any], int]


def command(
    sub: Any, name: str, run: Runner, help_text: str, flag_settings: FlagSettings | None = None
) -> argparse.ArgumentParser:
    """A subcommand's parser, bound to the function that runs it and the settings its flags override."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    parser.set_defaults(run=run, flag_settings=flag_settings or {})
    return parser


def kafka_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap-servers", help="Kafka brokers, host:port[,host:port]")


def metrics_flag(parser: argparse.ArgumentParser, section: str, flags: FlagSettings) -> None:
    """--metrics-port, overriding `section.metrics_port`."""
    parser.add_argument("--metrics-port", type=int, help="port of /metrics, /healthz, /readyz (0 disables)")
    flags["metrics_port"] = (section, "metrics_port")
