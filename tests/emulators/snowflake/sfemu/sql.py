"""A small Snowflake SQL tokenizer and a cursor over its tokens.

The emulator only needs to recognise a handful of statement shapes (SWAP WITH,
CLONE, GRANT, ...) and pull object names out of them. A regex would break on
quoted names that contain dots, spaces or keywords, so names are read from
tokens instead, with Snowflake's identifier rules:

* unquoted identifiers fold to UPPER case,
* double-quoted identifiers keep their case, and ``""`` inside them is a ``"``.

Comments and string literals are tokenized too, so that a keyword inside
them is never mistaken for part of the statement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SnowflakeError, syntax_error

_UNQUOTED = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_NUMBER = re.compile(r"\d+(\.\d*)?([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?")
# Identifiers that Snowflake can print without quotes: SHOW output quotes the rest.
_PLAIN_IDENT = re.compile(r"[A-Z_][A-Z0-9_$]*")


@dataclass(frozen=True)
class Token:
    kind: str  # "word" (unquoted identifier or keyword), "quoted", "string", "number", "punct"
    text: str  # source text of the token
    value: str  # identifier value after folding/unescaping; the text for the other kinds
    start: int  # offset in the statement text

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.value in words


def tokenize(sql: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch.isspace():
            i += 1
        elif sql.startswith("--", i) or sql.startswith("//", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                raise syntax_error(sql, i, "unterminated comment")
            i = end + 2
        elif ch == '"':
            j = i + 1
            while True:
                j = sql.find('"', j)
                if j < 0:
                    raise syntax_error(sql, i, "unterminated quoted identifier")
                if sql.startswith('""', j):
                    j += 2
                    continue
                break
            tokens.append(Token("quoted", sql[i : j + 1], sql[i + 1 : j].replace('""', '"'), i))
            i = j + 1
        elif ch == "'":
            j = i + 1
            while j < n:
                if sql[j] == "\\" or sql.startswith("''", j):  # backslash escape
                    j += 2
                elif sql[j] == "'":
                    break
                else:
                    j += 1
            if j >= n:
                raise syntax_error(sql, i, "unterminated string")
            tokens.append(Token("string", sql[i : j + 1], sql[i : j + 1], i))
            i = j + 1
        elif sql.startswith("$$", i):
            end = sql.find("$$", i + 2)
            if end < 0:
                raise syntax_error(sql, i, "unterminated $$ string")
            tokens.append(Token("string", sql[i : end + 2], sql[i : end + 2], i))
            i = end + 2
        elif m := _UNQUOTED.match(sql, i):
            tokens.append(Token("word", m.group(), m.group().upper(), i))
            i = m.end()
        elif ch.isdigit() or (ch == "." and i + 1 < n and sql[i + 1].isdigit()):
            m = _NUMBER.match(sql, i)
            assert m
            tokens.append(Token("number", m.group(), m.group(), i))
            i = m.end()
        else:
            tokens.append(Token("punct", ch, ch, i))
            i += 1
    return tokens


def quote_ident(name: str) -> str:
    """Quote an identifier for DuckDB or Snowflake SQL (both use ``"`` with ``""`` escapes)."""
    return '"' + name.replace('"', '""') + '"'


def display_ident(name: str) -> str:
    """An identifier as Snowflake prints it in SHOW output and messages: quoted only when needed."""
    return name if _PLAIN_IDENT.fullmatch(name) else quote_ident(name)


def display_name(parts: tuple[str, ...]) -> str:
    return ".".join(display_ident(p) for p in parts)


class Parser:
    """A cursor over the tokens of one statement, with Snowflake-flavoured helpers."""

    def __init__(self, sql: str):
        self.sql = sql
        self.tokens = tokenize(sql)
        # one trailing semicolon is allowed; anything after it is a second statement
        if self.tokens and self.tokens[-1].text == ";":
            self.tokens.pop()
        self.pos = 0

    # -- looking -----------------------------------------------------------------------
    def peek(self, offset: int = 0) -> Token | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def at_end(self) -> bool:
        return self.pos >= len(self.tokens)

    def peek_words(self, *words: str) -> bool:
        """True when the next tokens are exactly these keywords (no consumption)."""
        for k, word in enumerate(words):
            tok = self.peek(k)
            if tok is None or not tok.is_word(word):
                return False
        return True

    def has_word(self, word: str) -> bool:
        """True when the keyword appears anywhere in the rest of the statement."""
        return any(t.is_word(word) for t in self.tokens[self.pos :])

    # -- consuming ---------------------------------------------------------------------
    def accept(self, *words: str) -> bool:
        """Consume the keyword sequence if it is next; say whether it was."""
        if self.peek_words(*words):
            self.pos += len(words)
            return True
        return False

    def accept_any(self, *words: str) -> str | None:
        tok = self.peek()
        if tok is not None and tok.kind == "word" and tok.value in words:
            self.pos += 1
            return tok.value
        return None

    def expect(self, *words: str) -> None:
        for word in words:
            if not self.accept(word):
                raise self.error()

    def accept_punct(self, ch: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "punct" and tok.value == ch:
            self.pos += 1
            return True
        return False

    def ident(self) -> str:
        tok = self.peek()
        if tok is None or tok.kind not in ("word", "quoted"):
            raise self.error()
        self.pos += 1
        return tok.value

    def name(self, max_parts: int = 3) -> tuple[str, ...]:
        """A possibly qualified object name: ``a``, ``a.b`` or ``a.b.c``."""
        parts = [self.ident()]
        while self.accept_punct("."):
            parts.append(self.ident())
        if len(parts) > max_parts:
            raise SnowflakeError.syntax(f"invalid object name '{display_name(tuple(parts))}'")
        return tuple(parts)

    def words_until(self, *stops: str) -> list[str]:
        """Consume words (e.g. a privilege list) up to one of the stop keywords."""
        out: list[str] = []
        while not self.at_end() and not any(self.peek_words(s) for s in stops):
            tok = self.peek()
            assert tok is not None
            out.append(tok.value)
            self.pos += 1
        return out

    def end(self) -> None:
        if not self.at_end():
            raise self.error()

    def rest_text(self) -> str:
        tok = self.peek()
        return "" if tok is None else self.sql[tok.start :].strip().rstrip(";").strip()

    def error(self) -> SnowflakeError:
        tok = self.peek()
        if tok is None:
            return syntax_error(self.sql, len(self.sql), "unexpected end of statement")
        return syntax_error(self.sql, tok.start, f"unexpected '{tok.text}'")


def replace_created_name(ddl: str, new_name: str) -> str:
    """Point a DuckDB ``CREATE [TEMP] TABLE|VIEW <name>...`` statement at a new name.

    DuckDB keeps each table's and view's DDL (duckdb_tables().sql / duckdb_views().sql);
    the emulator re-runs it under another name to copy or move an object, keeping the
    rest of the text (columns, defaults, constraints, a view's query) byte for byte.
    """
    p = Parser(ddl)
    p.expect("CREATE")
    p.accept("OR", "REPLACE")
    p.accept_any("TEMP", "TEMPORARY")
    if not p.accept_any("TABLE", "VIEW"):
        raise ValueError(f"not a CREATE TABLE/VIEW statement: {ddl!r}")
    head_end = p.peek()
    assert head_end is not None
    p.name()
    rest = p.peek()
    tail = "" if rest is None else ddl[rest.start :]
    return ddl[: head_end.start] + new_name + " " + tail
