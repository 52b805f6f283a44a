"""Re-encode fakesnow's Arrow result sets as Snowflake JSON rowsets.

fakesnow answers queries with ``queryResultFormat: "arrow"`` (base64 Arrow IPC in
Snowflake's Arrow conventions), but the Rust client ``snowflake-connector-rs``
accepts JSON rowsets only. Snowflake's JSON rowset is a list of rows, each a
list of cells that are JSON strings (or null) in the encoding the server uses
for that column type:

============== ===============================================================
FIXED          decimal text with exactly ``scale`` fraction digits ("1.50")
REAL           shortest round-trip text; "NaN", "inf", "-inf"
TEXT           the string
BOOLEAN        "1" / "0"
DATE           days since 1970-01-01 ("19889")
TIME           seconds since midnight, ``scale`` fraction digits ("45296.123000000")
TIMESTAMP_NTZ  epoch seconds, ``scale`` fraction digits ("1718454645.123456000")
TIMESTAMP_LTZ  same as TIMESTAMP_NTZ (the instant in UTC)
TIMESTAMP_TZ   epoch seconds, a space, then the offset in minutes + 1440 ("1718454645.000000000 1980")
VARIANT/OBJECT/ARRAY  the JSON text
BINARY         upper-case hex
============== ===============================================================

The input follows Snowflake's own Arrow layout (it is what the Python connector
reads): timestamps are structs of ``epoch`` seconds, ``fraction`` nanoseconds
and, for TZ, a ``timezone`` index; TIME is an integer count of 10^-scale seconds
(fakesnow uses nanoseconds with scale 9); FIXED is an integer or a decimal.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import math
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

Cell = str | None
_EPOCH_DAY = datetime.date(1970, 1, 1)


def arrow_to_rowset(rowset_base64: str, rowtype: Sequence[dict[str, Any]]) -> list[list[Cell]]:
    if not rowset_base64:
        return []
    table = pa.ipc.open_stream(base64.b64decode(rowset_base64)).read_all()
    if table.num_columns != len(rowtype):
        raise ValueError(f"arrow result has {table.num_columns} columns but rowtype has {len(rowtype)}")
    columns = [
        [None if _is_null(v) else encode(v) for v in table.column(i).to_pylist()]
        for i, encode in enumerate(encoder(col) for col in rowtype)
    ]
    return [list(row) for row in zip(*columns, strict=False)] if columns else [[] for _ in range(table.num_rows)]


def _is_null(value: Any) -> bool:
    """SQL NULL. fakesnow sends a NULL timestamp as a struct whose fields are all
    null (the struct itself is present), so such a struct is NULL too."""
    if isinstance(value, dict):
        return value.get("epoch") is None
    return value is None


def encoder(column: dict[str, Any]) -> Callable[[Any], str]:
    """The cell encoder for one rowtype entry (type names as Snowflake sends them, any case)."""
    sf_type = str(column.get("type", "text")).lower()
    scale = column.get("scale")
    if sf_type == "fixed":
        return lambda v: fixed(v, scale or 0)
    if sf_type == "real":
        return real
    if sf_type == "boolean":
        return lambda v: "1" if v else "0"
    if sf_type == "date":
        return date
    if sf_type == "time":
        return lambda v: time(v, 9 if scale is None else scale)
    if sf_type in ("timestamp_ntz", "timestamp_ltz"):
        return lambda v: timestamp(v, 9 if scale is None else scale, with_zone=False)
    if sf_type == "timestamp_tz":
        return lambda v: timestamp(v, 9 if scale is None else scale, with_zone=True)
    if sf_type == "binary":
        return lambda v: bytes(v).hex().upper()
    return text


def fixed(value: int | decimal.Decimal, scale: int) -> str:
    if isinstance(value, decimal.Decimal):
        return f"{value:.{scale}f}"
    if scale == 0:
        return str(value)
    # an integer column with a scale carries the unscaled value (Snowflake's Arrow convention)
    return f"{decimal.Decimal(value).scaleb(-scale):.{scale}f}"


def real(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(float(value))


def text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def date(value: datetime.date | int) -> str:
    if isinstance(value, datetime.date):
        return str((value - _EPOCH_DAY).days)
    return str(value)


def seconds_text(nanos: int, scale: int) -> str:
    """nanoseconds as seconds with exactly `scale` fraction digits (truncating, sign-aware)."""
    sign = "-" if nanos < 0 else ""
    units = abs(nanos) // 10 ** (9 - scale)
    whole, frac = divmod(units, 10**scale)
    return f"{sign}{whole}" if scale == 0 else f"{sign}{whole}.{frac:0{scale}d}"


def time(value: int | datetime.time, scale: int) -> str:
    if isinstance(value, datetime.time):
        nanos = ((value.hour * 60 + value.minute) * 60 + value.second) * 10**9 + value.microsecond * 1000
    else:
        nanos = int(value) * 10 ** (9 - scale)  # stored in units of 10^-scale s
    return seconds_text(nanos, scale)


def timestamp(value: dict[str, int] | datetime.datetime, scale: int, with_zone: bool) -> str:
    if isinstance(value, datetime.datetime):
        # defensive: a plain Arrow timestamp rather than Snowflake's struct
        aware = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        delta = aware - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
        nanos = (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000
        offset = aware.utcoffset() or datetime.timedelta(0)
        zone = 1440 + int(offset.total_seconds() // 60)
    else:
        nanos = value["epoch"] * 10**9 + value["fraction"]
        zone = value.get("timezone", 1440)
    encoded = seconds_text(nanos, scale)
    return f"{encoded} {zone}" if with_zone else encoded
