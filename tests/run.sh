#!/usr/bin/env bash
# The whole test suite: every Rust test (unit and integration, `cargo test
# --release`) and the emulators' own tests (pytest), in three lanes after
# one build:
#   local      every test target that is not a warehouse emulator's (DuckDB,
#              dbt) and the doc tests
#   bigquery   tests/bigquery*.rs, then tests/emulators/bigquery/test.sh
#   snowflake  tests/snowflake*.rs, then tests/emulators/snowflake/test.sh
# By default the lanes run one after another, their output as it comes.
# --parallel runs them side by side (each emulator is one Python process on
# one core, so the emulator tests mostly wait on it: about 40% less wall
# time on 2 cores), each lane's output printed whole when it ends; under
# that load the BigQuery emulator has once failed a statement with an
# internal error ('NoneType' object has no attribute 'schema'), so CI keeps
# the default. What the tests need is installed on first use, outside the
# clone (tests/dbt/install.sh, tests/emulators/*/install.sh); here those
# installs run beside the build. Exits 0 when every lane passed, else 1
# naming the lanes that failed.
#   tests/run.sh [--parallel] [--lane local|bigquery|snowflake]...
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/airlock-target}"

all_lanes=(local bigquery snowflake)
lanes=()
parallel=0
while [ $# -gt 0 ]; do
    case "$1" in
        --parallel) parallel=1; shift ;;
        --lane)
            case "${2:-}" in
                snowflake|bigquery|local) lanes+=("$2"); shift 2 ;;
                *) echo "tests/run.sh: --lane takes snowflake, bigquery or local, not '${2:-}'" >&2; exit 2 ;;
            esac ;;
        *) echo "usage: tests/run.sh [--parallel] [--lane local|bigquery|snowflake]..." >&2; exit 2 ;;
    esac
done
[ ${#lanes[@]} -gt 0 ] || lanes=("${all_lanes[@]}")
wants() { local l; for l in "${lanes[@]}"; do [ "$l" = "$1" ] && return 0; done; return 1; }

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
started=$SECONDS

# installs the tests would otherwise do on first use, beside the build
installs=()
if wants local; then bash tests/dbt/install.sh >"$logs/install-dbt.log" 2>&1 & installs+=("$!:dbt"); fi
if wants snowflake; then bash tests/emulators/snowflake/install.sh >"$logs/install-snowflake.log" 2>&1 </dev/null & installs+=("$!:snowflake"); fi
if wants bigquery; then bash tests/emulators/bigquery/install.sh >"$logs/install-bigquery.log" 2>&1 </dev/null & installs+=("$!:bigquery"); fi

build_ok=1
cargo test --release --no-run || build_ok=0
install_ok=1
for entry in "${installs[@]}"; do
    if ! wait "${entry%%:*}"; then
        echo "tests/run.sh: installing what the ${entry#*:} tests need failed:" >&2
        cat "$logs/install-${entry#*:}.log" >&2
        install_ok=0
    fi
done
if [ $build_ok = 0 ] || [ $install_ok = 0 ]; then
    echo "tests/run.sh: $([ $build_ok = 0 ] && echo "the build failed" || echo "an install failed"); no test ran" >&2
    exit 1
fi
echo "tests/run.sh: built in $((SECONDS - started)) s; running lanes ${lanes[*]} $([ $parallel = 1 ] && echo "side by side" || echo "one after another")"

# the local lane: every test target that is not a warehouse emulator's
local_targets=()
for f in tests/*.rs; do
    name="$(basename "$f" .rs)"
    case "$name" in snowflake*|bigquery*) ;; *) local_targets+=(--test "$name") ;; esac
done

lane() {
    case "$1" in
        snowflake) cargo test --release --test snowflake --test snowflake_connect && bash tests/emulators/snowflake/test.sh ;;
        bigquery) cargo test --release --test bigquery --test bigquery_connect && bash tests/emulators/bigquery/test.sh ;;
        local) cargo test --release --lib --bins "${local_targets[@]}" && cargo test --release --doc ;;
    esac
}

run_lane() {
    local name="$1" t0=$SECONDS rc=0
    lane "$name" >"$logs/$name.log" 2>&1 </dev/null || rc=$?
    {
        flock 9
        echo "==================== lane $name: $([ $rc = 0 ] && echo passed || echo "FAILED (exit $rc)") in $((SECONDS - t0)) s"
        cat "$logs/$name.log"
    } 9>"$logs/print.lock"
    return $rc
}

failed=()
if [ $parallel = 1 ]; then
    pids=()
    for name in "${lanes[@]}"; do
        run_lane "$name" & pids+=("$!:$name")
    done
    for entry in "${pids[@]}"; do
        wait "${entry%%:*}" || failed+=("${entry#*:}")
    done
else
    for name in "${lanes[@]}"; do
        t0=$SECONDS
        echo "==================== lane $name"
        if lane "$name" </dev/null; then
            echo "==================== lane $name: passed in $((SECONDS - t0)) s"
        else
            echo "==================== lane $name: FAILED in $((SECONDS - t0)) s"
            failed+=("$name")
        fi
    done
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "tests/run.sh: FAILED lanes: ${failed[*]} (after $((SECONDS - started)) s)" >&2
    exit 1
fi
echo "tests/run.sh: every lane passed (${lanes[*]}) in $((SECONDS - started)) s"
