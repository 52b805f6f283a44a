#!/usr/bin/env bash
# Install the BigQuery emulator (bqemulator + test tools, pinned in
# requirements.txt) into a venv outside the clone. Idempotent: a no-op when the
# venv's stamp matches requirements.txt and the Python that built it. Quiet
# unless it fails; then the tail of its log goes to stderr.
#   tests/emulators/bigquery/install.sh      # prints nothing; exit 0 when ready
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
home="${AIRLOCK_EMULATOR_HOME:-$HOME/.cache/airlock-emulators}"
venv="$home/bigquery-venv"
log="$home/bigquery-install.log"
python="${PYTHON3:-python3}"

mkdir -p "$home"
# What the venv must match: the pins, and the interpreter (a venv does not
# survive its Python being replaced).
want="$(cat "$here/requirements.txt" <("$python" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
stamp="$venv/.airlock-stamp"
ready() { [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; }
ready && exit 0

# Two start.sh at once (e.g. parallel test jobs) must not build the same venv.
exec 9>"$home/bigquery-install.lock"
flock 9
ready && exit 0

{
  echo "== $(date -u +%FT%TZ) installing into $venv"
  rm -f "$stamp"
  "$python" -m venv --clear "$venv"
  PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$venv/bin/pip" install --quiet --requirement "$here/requirements.txt"
} >"$log" 2>&1 || {
  echo "bigquery emulator install failed; last lines of $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
}
echo "$want" >"$stamp"
