#!/usr/bin/env bash
# Start a warehouse emulator in the background on a free port of 127.0.0.1,
# installing it first (idempotently, into a venv outside the clone). Prints
# KEY=VALUE lines on stdout; see tests/emulators/README.md.
#   tests/emulators/start.sh snowflake|bigquery
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
case "${1:-}" in
  snowflake|bigquery) exec "$here/$1/start.sh" ;;
  *) echo "usage: $0 snowflake|bigquery" >&2; exit 2 ;;
esac
