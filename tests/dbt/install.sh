#!/usr/bin/env bash
# Install the dbt the dbt-builder tests and benchmarks run: dbt-core 1.11.16 +
# dbt-duckdb 1.11.1 (+ duckdb 2.0.0, the engine airlock bundles) into
# $AIRLOCK_DBT_VENV (default ~/.cache/airlock-dbt-venv, the venv benches/run.py
# uses), outside the clone. Idempotent and quiet: prints the dbt executable's
# path; on failure, pip's output and exit 1. dbt-core 1.12 does not install
# offline (its experimental parser downloads a wheel at build time).
set -euo pipefail
VENV="${AIRLOCK_DBT_VENV:-$HOME/.cache/airlock-dbt-venv}"
PINS=(dbt-core==1.11.16 dbt-duckdb==1.11.1 duckdb==2.0.0)
WANT="1.11.16 1.11.1 2.0.0"
versions() {
    "$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('dbt-core'), m.version('dbt-duckdb'), m.version('duckdb'))" 2>/dev/null || true
}
mkdir -p "$(dirname "$VENV")"
# tests call this concurrently: one installer at a time
exec 9>"$VENV.install-lock"
flock 9
if [ ! -x "$VENV/bin/dbt" ] || [ "$(versions)" != "$WANT" ]; then
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    if ! { { [ -x "$VENV/bin/pip" ] || python3 -m venv --clear "$VENV"; } &&
           "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "tests/dbt/install.sh: installing ${PINS[*]} into $VENV failed" >&2
        exit 1
    fi
    if [ "$(versions)" != "$WANT" ]; then
        echo "tests/dbt/install.sh: $VENV has '$(versions)' after installing, expected '$WANT'" >&2
        exit 1
    fi
fi
echo "$VENV/bin/dbt"
