"""Rewrites of Snowflake statements that fakesnow cannot run as written, into
Snowflake statements it can, with the same result for what airlock reads.

* ``HASH_AGG(*)`` (an order-independent aggregate hash of whole rows) is
  missing in fakesnow; it becomes ``SUM(HASH(OBJECT_CONSTRUCT(*)))``: also
  order-independent and over every column, so equal tables hash equal and a
  changed row changes it. The numbers differ from Snowflake's (only equality
  is ever compared).
* A schema-qualified temporary table (``CREATE [OR REPLACE] TEMP[ORARY] TABLE
  s.t``), which Snowflake documents, fails in fakesnow: DuckDB keeps temporary
  tables in a catalog of their own. The table is created as a permanent one;
  it is visible to other sessions and is not dropped when the session ends
  (airlock drops its temporary tables itself).

Everything else is returned unchanged.
"""

from __future__ import annotations

from .errors import SnowflakeError
from .sql import tokenize


def for_fakesnow(sql: str) -> str:
    try:
        tokens = tokenize(sql)
    except SnowflakeError:
        return sql  # fakesnow reports the syntax error
    edits: list[tuple[int, int, str]] = []
    for i, t in enumerate(tokens):
        if t.is_word("HASH_AGG") and [x.text for x in tokens[i + 1 : i + 4]] == ["(", "*", ")"]:
            close = tokens[i + 3]
            edits.append((t.start, close.start + 1, "SUM(HASH(OBJECT_CONSTRUCT(*)))"))
    edits.extend(_qualified_temp_table(tokens))
    for start, end, text in sorted(edits, reverse=True):
        sql = sql[:start] + text + sql[end:]
    return sql


def _qualified_temp_table(tokens: list) -> list[tuple[int, int, str]]:
    """The TEMP keyword of CREATE [OR REPLACE] TEMP[ORARY] TABLE <qualified name>, removed."""
    if not tokens or not tokens[0].is_word("CREATE"):
        return []
    i = 1
    if i + 1 < len(tokens) and tokens[i].is_word("OR") and tokens[i + 1].is_word("REPLACE"):
        i += 2
    if i >= len(tokens) or not tokens[i].is_word("TEMP", "TEMPORARY", "LOCAL", "GLOBAL"):
        return []
    first = i
    while i < len(tokens) and tokens[i].is_word("TEMP", "TEMPORARY", "LOCAL", "GLOBAL"):
        i += 1
    if i >= len(tokens) or not tokens[i].is_word("TABLE"):
        return []
    name = i + 1
    if name + 1 < len(tokens) and tokens[name + 1].text == "." and tokens[name].kind in ("word", "quoted"):
        return [(tokens[first].start, tokens[i].start, "")]
    return []
