#!/usr/bin/env bash
# Move the lock: re-resolve uv.lock to the newest versions inside pyproject.toml's ranges, print what changed, sync
# the venv and run the whole suite (scripts/test.sh; extra arguments go to pytest). A green suite keeps the new lock
# for you to commit; a red one puts the old lock back (and the venv with it) and keeps the new one as
# uv.lock.rejected to investigate. Run it when you want newer dependencies (monthly, or for a security fix), never
# as part of an install: installs read the lock.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VISIONSTREAM_SYNC="--extra test"
# shellcheck source=scripts/setup.sh
source "$ROOT/scripts/setup.sh"
cd "$ROOT"

old="$(mktemp)"
cp uv.lock "$old"
log "re-resolving uv.lock to the newest versions pyproject.toml allows"
"$UV" lock --upgrade --quiet --python "$PY"
python "$ROOT/scripts/lock_diff.py" "$old" uv.lock

set +e
bash "$ROOT/scripts/test.sh" "$@"
status=$?
set -e
if [ "$status" -ne 0 ]; then
  cp uv.lock uv.lock.rejected
  cp "$old" uv.lock
  "$UV" sync --locked --quiet --python "$PY" --extra test
  log "the suite failed on the new versions (exit $status): uv.lock is back as it was; the new one is uv.lock.rejected"
  exit "$status"
fi
rm -f "$old"
log "the suite passed on the new lock: review 'git diff uv.lock' and commit it"
