#!/usr/bin/env bash
# Install the BigQuery emulator if needed and run its tests (test_emulator.py),
# which start and stop their own emulator through start.sh / stop.sh.
# Prints pytest's summary line; exits non-zero when a test fails.
#   tests/emulators/bigquery/test.sh [pytest args...]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
home="${AIRLOCK_EMULATOR_HOME:-$HOME/.cache/airlock-emulators}"

"$here/install.sh" </dev/null
# No .pytest_cache or __pycache__ inside the clone. No plugin autoload:
# bqemulator ships a pytest plugin that needs testcontainers (Docker).
PYTHONDONTWRITEBYTECODE=1 PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 exec "$home/bigquery-venv/bin/python" -m pytest -q -p no:cacheprovider \
  "$here/test_emulator.py" "$@" </dev/null
