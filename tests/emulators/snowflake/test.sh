#!/usr/bin/env bash
# Install the Snowflake emulator and run its tests (pytest, -q). The tests start
# their own emulator in a private state directory and stop it afterwards, so a
# developer's running emulator is left alone. Exits non-zero on any failure.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
home="${AIRLOCK_EMULATOR_HOME:-$HOME/.cache/airlock-emulators}"

"$here/install.sh"
cd "$here"
# no .pytest_cache or __pycache__ in the clone
PYTHONDONTWRITEBYTECODE=1 exec "$home/snowflake-venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
