#!/usr/bin/env bash
# Start the Snowflake emulator in the background on a free port of 127.0.0.1
# (installing it first) and print how to reach it, one KEY=VALUE per line:
#   SNOWFLAKE_HOST=127.0.0.1
#   SNOWFLAKE_PORT=<port>
#   SNOWFLAKE_PROTOCOL=http
#   PYTHON=<venv python with snowflake-connector-python>
#   PID=<server pid>
# The same lines go to ${AIRLOCK_EMULATOR_STATE:-$HOME/.cache/airlock-emulators/run}/snowflake.env.
# If that file names a live emulator that answers, its lines are printed again
# and nothing is started. Logs and database files live beside the state file.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
home="${AIRLOCK_EMULATOR_HOME:-$HOME/.cache/airlock-emulators}"
state="${AIRLOCK_EMULATOR_STATE:-$home/run}"
env_file="$state/snowflake.env"
log="$state/snowflake.log"
data="$state/snowflake-data"
py="$home/snowflake-venv/bin/python"

"$here/install.sh" >&2
mkdir -p "$state"
# One start at a time per state dir, so two callers cannot both start a server.
exec 9>"$state/.snowflake-start.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

healthy() { # port
  "$py" - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/emulator/health", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
}

if [[ -f "$env_file" ]]; then
  old_pid="$(sed -n 's/^PID=//p' "$env_file")"
  old_port="$(sed -n 's/^SNOWFLAKE_PORT=//p' "$env_file")"
  if [[ -n "$old_pid" && -n "$old_port" ]] && kill -0 "$old_pid" 2>/dev/null && healthy "$old_port"; then
    cat "$env_file"
    exit 0
  fi
  rm -f "$env_file"
fi

# A fresh, empty set of databases for every run.
rm -rf "$data"
port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

# setsid + nohup: the server outlives this script and the caller's terminal or
# process group; PYTHONDONTWRITEBYTECODE keeps __pycache__ out of the clone.
PYTHONDONTWRITEBYTECODE=1 setsid nohup "$py" "$here/server.py" --port "$port" --data-dir "$data" \
  </dev/null >"$log" 2>&1 9>&- &
pid=$!

for _ in $(seq 1 150); do # up to ~30 s
  if healthy "$port"; then
    {
      echo "SNOWFLAKE_HOST=127.0.0.1"
      echo "SNOWFLAKE_PORT=$port"
      echo "SNOWFLAKE_PROTOCOL=http"
      echo "PYTHON=$py"
      echo "PID=$pid"
    } >"$env_file.tmp"
    mv "$env_file.tmp" "$env_file"
    cat "$env_file"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    break
  fi
  sleep 0.2
done

echo "snowflake emulator did not become ready (log: $log):" >&2
tail -n 40 "$log" >&2 || true
kill "$pid" 2>/dev/null || true
exit 1
