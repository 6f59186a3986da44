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

# OpenCV's pedestrian clip (vtest.avi, in Debian's opencv-doc examples): the people detector's test input.
# Only that file is taken from the package (apt-get download + dpkg-deb), not the 270 MB of documentation.
PEOPLE_VIDEO="${VISIONSTREAM_HOME:-$HOME/.cache/visionstream}/testdata/vtest.avi"
if [ ! -s "$PEOPLE_VIDEO" ]; then
  log "fetching OpenCV's pedestrian clip (vtest.avi from Debian's opencv-doc)"
  tmp="$(mktemp -d)"
  if ! (cd "$tmp" && apt-get download -qq opencv-doc >/dev/null 2>&1); then
    apt-get update -qq && (cd "$tmp" && apt-get download -qq opencv-doc >/dev/null)
  fi
  dpkg-deb --fsys-tarfile "$tmp"/opencv-doc_*.deb | tar -x -C "$tmp" ./usr/share/doc/opencv-doc/examples/data/vtest.avi
  mkdir -p "$(dirname "$PEOPLE_VIDEO")"
  mv "$tmp/usr/share/doc/opencv-doc/examples/data/vtest.avi" "$PEOPLE_VIDEO"
  rm -rf "$tmp"
fi
export VISIONSTREAM_PEOPLE_VIDEO="$PEOPLE_VIDEO"

# shellcheck source=scripts/deploy-tools.sh
source "$ROOT/scripts/deploy-tools.sh"

echo "== ruff" >&2
ruff check .
ruff format --check .
echo "== mypy" >&2
mypy
echo "== pytest" >&2
set +e
# two workers (pytest-xdist), sharing one broker (tests/conftest.py); `-n 0` in the arguments runs one process
python -m pytest -ra -n "${VISIONSTREAM_TEST_WORKERS:-2}" --dist worksteal "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
