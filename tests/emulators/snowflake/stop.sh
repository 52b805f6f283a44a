#!/usr/bin/env bash
# Stop the Snowflake emulator that start.sh recorded in the state file: TERM,
# then KILL if it has not exited within ~10 s. Removes the state file. Exits 0
# when none was running.
set -euo pipefail

home="${AIRLOCK_EMULATOR_HOME:-$HOME/.cache/airlock-emulators}"
state="${AIRLOCK_EMULATOR_STATE:-$home/run}"
env_file="$state/snowflake.env"

[[ -f "$env_file" ]] || exit 0
pid="$(sed -n 's/^PID=//p' "$env_file")"

# Only signal the pid if it is still our server (pids get reused).
if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && grep -q "server.py" "/proc/$pid/cmdline" 2>/dev/null; then
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
fi
rm -f "$env_file"
