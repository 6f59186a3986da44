"""Running the platform: the local broker, topics, the face gallery and container health checks."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

from cli.commands import EXIT_FAILED, EXIT_OK, command

ROLE_ALIASES = {"infer": "inference", "analyze": "analytics"}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    k = command(sub, "kafka", run_kafka, "start, stop or inspect the local single-node Kafka broker")
    k.add_argument("action", choices=["start", "stop", "status"])
    k.add_argument("--port", type=int, default=9092, help="client port on 127.0.0.1 (default 9092)")
    k.add_argument("--controller-port", type=int, default=9093, help="KRaft controller port (default 9093)")
    k.add_argument("--data-dir", type=Path, help="log directory (default ~/.cache/visionstream/brokers/PORT/data)")
    k.add_argument(
        "--home",
        type=Path,
        help="jar cache and run files (default $VISIONSTREAM_HOME or ~/.cache/visionstream)",
    )

    r = command(sub, "registry", run_registry, "start, stop or inspect the local schema registry (Apicurio)")
    r.add_argument("action", choices=["start", "stop", "status"])
    r.add_argument("--port", type=int, default=8081, help="HTTP port on 127.0.0.1 (default 8081)")
    r.add_argument(
        "--home",
        type=Path,
        help="build cache and run files (default $VISIONSTREAM_HOME or ~/.cache/visionstream)",
    )

    command(sub, "topics", run_topics, "create the project's topics with their partitions and configs")

    fc = command(sub, "faces", run_faces, "the face gallery: enroll, list or remove known people")
    fc_sub = fc.add_subparsers(dest="faces_command", required=True, metavar="ACTION")
    fc_sub.add_parser = functools.partial(fc_sub.add_parser, parents=[common])  # type: ignore[method-assign]
    fc_enroll = fc_sub.add_parser("enroll", help="enroll NAME from photos that each show exactly one face")
    fc_enroll.add_argument("name", help="the person's name, as events will carry it")
    fc_enroll.add_argument("images", nargs="+", type=Path, help="photos of that person (anything OpenCV reads)")
    fc_sub.add_parser("list", help="the people in the gallery, one JSON object per line (never their embeddings)")
    fc_remove = fc_sub.add_parser("remove", help="remove NAME from the gallery (a tombstone on the gallery topic)")
    fc_remove.add_argument("name")

    h = command(sub, "healthcheck", run_healthcheck,
                "exit 0 if the role's /healthz on this host answers 200 (for containers)")  # fmt: skip
    h.add_argument(
        "role",
        nargs="?",
        choices=["ingest", "inference", "infer", "analytics", "analyze", "sink", "console"],
        help="the role as /healthz names it (infer, analyze: the same as inference, analytics); default: any",
    )
    h.add_argument("--port", type=int, help="ask this port (default: the role's *.metrics_port)")
    h.add_argument("--ready", action="store_true", help="ask /readyz instead of /healthz")


def run_topics(args: argparse.Namespace, settings: Any) -> int:
    from visionstream.topics import ensure_topics

    created = ensure_topics(settings.kafka, settings.topics)
    print(json.dumps({"created": created}))
    return EXIT_OK


def run_faces(args: argparse.Namespace, settings: Any) -> int:
    from cli import faces

    if args.faces_command == "enroll":
        return faces.enroll(settings, args.name, args.images)
    if args.faces_command == "list":
        return faces.list_people(settings)
    return faces.remove(settings, args.name)


def run_healthcheck(args: argparse.Namespace, settings: Any) -> int:
    import urllib.request

    ports = {
        "ingest": settings.ingest.metrics_port,
        "inference": settings.inference.metrics_port,
        "analytics": settings.analytics.metrics_port,
        "sink": settings.sink.metrics_port,
        "console": settings.console.port,
    }
    role = ROLE_ALIASES.get(args.role or "", args.role)
    if args.port is not None:
        candidates = [(role or "role", args.port)]
    else:
        candidates = [(name, p) for name, p in ports.items() if (role is None or role == name) and p]
    path = "/readyz" if args.ready else "/healthz"
    for _name, p in candidates:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{p}{path}", timeout=3) as resp:
                answered = json.loads(resp.read() or b"{}").get("role")
                if resp.status == 200 and (role is None or answered == role):
                    return EXIT_OK
        except (OSError, ValueError):
            continue
    where = ", ".join(f"{n} :{p}" for n, p in candidates) or "no port (all metrics ports are 0)"
    state = "ready" if args.ready else "healthy"
    print(f"visionstream healthcheck: no {state} {role or 'role'} at {where}", file=sys.stderr)
    return EXIT_FAILED


def run_registry(args: argparse.Namespace, settings: Any) -> int:
    from cli.broker import default_home
    from cli.registry import LocalRegistry

    registry = LocalRegistry(port=args.port, home=args.home or default_home())
    if args.action == "start":
        started = registry.start()
        print(f"{'started' if started else 'already running'}: schema registry {registry.url}", file=sys.stderr)
        print(registry.url)
    elif args.action == "stop":
        print("stopped" if registry.stop() else "not running", file=sys.stderr)
    else:
        pid = registry.running_pid()
        print(json.dumps({"running": pid is not None, "pid": pid, "url": registry.url}))
        return EXIT_OK if pid is not None else EXIT_FAILED
    return EXIT_OK


def run_kafka(args: argparse.Namespace, settings: Any) -> int:
    from cli.broker import LocalKafka, default_home

    broker = LocalKafka(
        port=args.port, controller_port=args.controller_port, home=args.home or default_home(), data_dir=args.data_dir
    )
    if args.action == "start":
        started = broker.start()
        print(f"{'started' if started else 'already running'}: bootstrap servers {broker.bootstrap}", file=sys.stderr)
        print(broker.bootstrap)
    elif args.action == "stop":
        stopped = broker.stop()
        print("stopped" if stopped else "not running", file=sys.stderr)
    else:
        pid = broker.running_pid()
        print(
            json.dumps(
                {"running": pid is not None, "pid": pid, "bootstrap": broker.bootstrap, "data": str(broker.data)}
            )
        )
        return EXIT_OK if pid is not None else EXIT_FAILED
    return EXIT_OK
