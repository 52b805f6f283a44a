#!/usr/bin/env bash
# Install the Snowflake emulator (fakesnow + its compatibility layer's dependencies)
# into a venv outside the clone:
#   ${AIRLOCK_EMULATOR_HOME:-$HOME/.cache/airlock-emulators}/snowflake-venv
# Idempotent and quiet: a no-op when the venv already matches requirements.txt
# (a stamp file holds the hash of that file and of the Python version). On
# failure it prints the tail of its log and exits non-zero. Needs no stdin.
# Set AIRLOCK_EMULATOR_PYTHON3 to use another python3 (3.11 or newer).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
home="${AIRLOCK_EMULATOR_HOME:-$HOME/.cache/airlock-emulators}"
venv="$home/snowflake-venv"
stamp="$venv/.airlock-stamp"
log="$home/snowflake-install.log"
python3="${AIRLOCK_EMULATOR_PYTHON3:-python3}"

mkdir -p "$home"

# Two installs at once (e.g. two test runs) must not interleave pip runs.
exec 9>"$home/.snowflake-install.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

want="$( { sha256sum "$here/requirements.txt" | cut -d' ' -f1; "$python3" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

fail() {
  echo "snowflake emulator install failed: $1 (log: $log)" >&2
  tail -n 40 "$log" >&2 || true
  exit 1
}

: >"$log"
"$python3" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >>"$log" 2>&1 \
  || fail "fakesnow needs Python 3.11+, $python3 is $("$python3" --version 2>&1)"
rm -rf "$venv"
"$python3" -m venv "$venv" >>"$log" 2>&1 || fail "python3 -m venv failed (on Debian: apt-get install python3-venv)"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt" >>"$log" 2>&1 || fail "pip install failed"
"$venv/bin/python" -c 'import fakesnow.server, snowflake.connector, uvicorn, pytest' >>"$log" 2>&1 \
  || fail "installed packages do not import"
echo "$want" >"$stamp"
