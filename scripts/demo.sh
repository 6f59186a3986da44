#!/usr/bin/env bash
# Quick start, command 1: set everything up, then run the demo on embedded defaults
# (local Kafka broker + SQLite + the MTCNN face model). Extra arguments go to `visionstream demo`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/setup.sh
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec visionstream demo "$@"
