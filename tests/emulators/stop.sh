#!/usr/bin/env bash
# Stop an emulator started by start.sh (by its PID).
#   tests/emulators/stop.sh snowflake|bigquery
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
case "${1:-}" in
  snowflake|bigquery) exec "$here/$1/stop.sh" ;;
  *) echo "usage: $0 snowflake|bigquery" >&2; exit 2 ;;
esac
