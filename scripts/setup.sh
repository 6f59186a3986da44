#!/usr/bin/env bash
# Sets up everything visionstream needs on a fresh Debian machine, idempotently:
# system packages (Java 17, Maven, Python venv) via apt-get when root, the Python venv with the project,
# and the local Kafka broker's jars from Maven Central into ~/.m2 and the jar cache.
# Sourced by scripts/demo.sh and scripts/test.sh; extra apt packages can be passed in EXTRA_APT_PACKAGES.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VISIONSTREAM_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

log() { printf '[setup] %s\n' "$*" >&2; }

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v "$PY" >/dev/null 2>&1 || need_apt+=(python3)
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

if [ ! -x "$VENV/bin/python" ]; then
  log "creating the venv at $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.visionstream-installed"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints/trackers.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing visionstream and its dependencies into the venv (first time: about a minute)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$ROOT[test]"
  # the tracker package, without its opencv-python requirement (see pyproject.toml)
  "$VENV/bin/python" -m pip install -q --no-deps -r "$ROOT/constraints/trackers.txt"
  echo "$want" >"$stamp"
fi

log "resolving the local Kafka broker's jars (Maven Central, cached)"
"$VENV/bin/python" -c 'from cli.broker import LocalKafka; print(LocalKafka().install())' >/dev/null

export PATH="$VENV/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
