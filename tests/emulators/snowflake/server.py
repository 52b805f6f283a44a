"""Run the Snowflake emulator: fakesnow's server app behind sfemu's compatibility layer.

    python server.py --port 8123 --data-dir /path/to/fresh/dir

Listens on 127.0.0.1 only. Test hooks come from the environment (see README.md):
SNOWFLAKE_EMULATOR_REJECT_USER, SNOWFLAKE_EMULATOR_MISSING_ROLES,
SNOWFLAKE_EMULATOR_MISSING_WAREHOUSES (comma-separated) and
SNOWFLAKE_EMULATOR_DEFAULT_DATABASE (empty to disable).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvicorn  # noqa: E402

from sfemu.app import Emulator  # noqa: E402
from sfemu.context import Hooks  # noqa: E402


def hooks_from_env() -> Hooks:
    defaults = Hooks()

    def names(var: str, default: frozenset[str]) -> frozenset[str]:
        value = os.environ.get(var)
        return default if value is None else frozenset(n.strip().upper() for n in value.split(",") if n.strip())

    default_db = os.environ.get("SNOWFLAKE_EMULATOR_DEFAULT_DATABASE", defaults.default_database)
    return Hooks(
        reject_user=os.environ.get("SNOWFLAKE_EMULATOR_REJECT_USER", defaults.reject_user).upper(),
        missing_roles=names("SNOWFLAKE_EMULATOR_MISSING_ROLES", defaults.missing_roles),
        missing_warehouses=names("SNOWFLAKE_EMULATOR_MISSING_WAREHOUSES", defaults.missing_warehouses),
        default_database=default_db or None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True, help="where the run's database files live")
    args = parser.parse_args()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger("sfemu").addHandler(handler)
    logging.getLogger("sfemu").setLevel(logging.INFO)
    # fakesnow warns on every Arrow result it builds; it is noise in the log
    warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")
    app = Emulator(args.data_dir, hooks_from_env()).app()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
