#!/usr/bin/env bash
# Quick start, command 2: set everything up, then run lint, type checks and the whole test suite.
# Integration tests start their own real services (a local KRaft Kafka broker on free ports);
# set BROKERS=host:port to run them against an existing cluster instead. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/setup.sh
# the real services the integration tests start: PostgreSQL, a Prometheus server (plus promtool), and
# GStreamer's RTSP server (Debian's python3-gi binds it; the tests run it with /usr/bin/python3), and the fonts
# the generated licence-plate test set is drawn in (evaluation/plates.py), and the browser the console's tests
# drive (Debian's chromium with its chromedriver: Selenium's and Playwright's own browser downloads cannot be
# fetched here)
EXTRA_APT_PACKAGES="${EXTRA_APT_PACKAGES:-} postgresql prometheus python3-gi gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf chromium chromium-driver"
# the venv exactly as uv.lock has it, with the test tools (scripts/setup.sh)
VISIONSTREAM_SYNC="--extra test"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"


# TensorFlow.js's own runtime (npm ci from devkit/tfjs/package-lock.json): the packaged models' cross-check
log "TensorFlow.js in Node for the packaged models' cross-check (npm ci, cached)"
python -c 'from devkit.tfjs_runtime import ensure_tfjs; ensure_tfjs()'

# the local schema registry the registry-framing tests run against (Apicurio Registry, built once from Maven
# Central by the Quarkus Maven plugin: cli/registry/pom.xml)
log "the local schema registry (Apicurio Registry from Maven Central, built once, cached)"
python -c 'from cli.registry import LocalRegistry; LocalRegistry().install()'
# the downstream peers the JSON-view and registry tests run: Kafka Connect with Apicurio's converter (Maven
# Central), kafkajs (npm ci from devkit/kafkajs/package-lock.json)
log "Kafka Connect, Apicurio's converter and kafkajs for the downstream-interop tests (cached)"
python -c 'from devkit.connect import install, install_plugin; install(); install_plugin("apicurio-converter")'
python -c 'from devkit.kafkajs import ensure_kafkajs; ensure_kafkajs()'

# shellcheck source=scripts/deploy-tools.sh
source "$ROOT/scripts/deploy-tools.sh"

echo "== ruff" >&2
ruff check .
ruff format --check .
echo "== mypy" >&2
mypy
echo "== pytest" >&2
set +e
# two workers (pytest-xdist), sharing one broker (tests/conftest.py); `-n 0` in the arguments runs one process.
# The slowest tests are listed at the end: the suite's budget is 15 minutes on 2 cores.
python -m pytest -ra -n "${PYTEST_WORKERS:-2}" --dist worksteal --durations=25 "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
