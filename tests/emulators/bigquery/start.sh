#!/usr/bin/env bash
# Start the BigQuery emulator (bqemulator behind server.py) in the background
# on a free port of 127.0.0.1, installing it first. Prints on stdout:
#   BIGQUERY_ENDPOINT=http://127.0.0.1:PORT   (REST v2 lives under /bigquery/v2)
#   BIGQUERY_PROJECT=airlock-emulator
#   PYTHON=<venv python with google-cloud-bigquery>
#   PID=<server pid>
# and writes the same lines to $state/bigquery.env. When that file names a live
# server that answers, prints its lines and starts nothing.
#   tests/emulators/bigquery/start.sh        (or tests/emulators/start.sh bigquery)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
home="${AIRLOCK_EMULATOR_HOME:-$HOME/.cache/airlock-emulators}"
state="${AIRLOCK_EMULATOR_STATE:-$home/run}"
env_file="$state/bigquery.env"
log="$state/bigquery.log"
ready_file="$state/bigquery.ready"
py="$home/bigquery-venv/bin/python"
project=airlock-emulator
wait_seconds=60

"$here/install.sh" </dev/null
mkdir -p "$state"
# One start at a time per state dir, or two could each launch a server.
exec 8>"$state/bigquery.lock"
flock -w $((wait_seconds + 30)) 8 || { echo "bigquery emulator: $state/bigquery.lock stays locked" >&2; exit 1; }

answers() {  # answers ENDPOINT: the emulator's liveness probe says ok
  "$py" - "$1/healthz" <<'EOF' >/dev/null 2>&1
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    assert json.load(r)["status"] == "ok"
EOF
}

if [[ -f "$env_file" ]]; then
  running_pid="$(sed -n 's/^PID=//p' "$env_file")"
  running_endpoint="$(sed -n 's/^BIGQUERY_ENDPOINT=//p' "$env_file")"
  if [[ -n "$running_pid" ]] && kill -0 "$running_pid" 2>/dev/null && answers "$running_endpoint"; then
    cat "$env_file"
    exit 0
  fi
  rm -f "$env_file"  # stale: its server is gone
fi

rm -f "$ready_file"
# setsid: the server outlives this script and the terminal or CI step that ran
# it; stop.sh ends it by pid.
# 8>&-: the server must not hold the start lock for its whole life.
setsid nohup "$py" "$here/server.py" --project "$project" --ready-file "$ready_file" \
  </dev/null >"$log" 2>&1 8>&- &
launched=$!

fail() {
  echo "bigquery emulator: $1; last lines of $log:" >&2
  tail -n 30 "$log" >&2
  kill "$launched" 2>/dev/null || true
  exit 1
}

deadline=$((SECONDS + wait_seconds))
until [[ -s "$ready_file" ]]; do
  kill -0 "$launched" 2>/dev/null || fail "server exited during startup"
  ((SECONDS < deadline)) || fail "not ready after ${wait_seconds}s"
  sleep 0.2
done
read -r port pid <"$ready_file"
rm -f "$ready_file"
endpoint="http://127.0.0.1:$port"
answers "$endpoint" || fail "bound port $port but /healthz does not answer"

tmp="$env_file.tmp"
printf 'BIGQUERY_ENDPOINT=%s\nBIGQUERY_PROJECT=%s\nPYTHON=%s\nPID=%s\n' \
  "$endpoint" "$project" "$py" "$pid" >"$tmp"
mv "$tmp" "$env_file"
cat "$env_file"
