#!/usr/bin/env bash
# Stop the BigQuery emulator that start.sh started: TERM its pid, KILL it if it
# is still there after a bounded wait, remove the state file. Exit 0 when none
# was running.
#   tests/emulators/bigquery/stop.sh        (or tests/emulators/stop.sh bigquery)
set -euo pipefail
home="${AIRLOCK_EMULATOR_HOME:-$HOME/.cache/airlock-emulators}"
state="${AIRLOCK_EMULATOR_STATE:-$home/run}"
env_file="$state/bigquery.env"
grace_seconds=10

[[ -f "$env_file" ]] || exit 0
pid="$(sed -n 's/^PID=//p' "$env_file")"

# Only signal the pid if it is still our server: after a reboot the number
# may belong to anything.
if [[ -n "$pid" ]] && grep -qs 'bigquery/server.py' "/proc/$pid/cmdline"; then
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + grace_seconds))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
fi
rm -f "$env_file"
