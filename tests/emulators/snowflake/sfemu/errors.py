"""Snowflake errors, worded and numbered as Snowflake words and numbers them.

Clients match on the code and sqlState (and people read the message), so each
constructor copies Snowflake's own text for that situation.
"""

from __future__ import annotations


class SnowflakeError(Exception):
    def __init__(self, code: str, sql_state: str, message: str):
        super().__init__(message)
        self.code = code
        self.sql_state = sql_state
        self.message = message

    @classmethod
    def syntax(cls, detail: str) -> SnowflakeError:
        return cls("001003", "42000", f"SQL compilation error:\n{detail}")

    @classmethod
    def does_not_exist(cls, kind: str, name: str) -> SnowflakeError:
        """kind is Snowflake's label: 'Database', 'Schema', 'Table', 'View', 'Object'."""
        return cls("002003", "02000", f"SQL compilation error:\n{kind} '{name}' does not exist or not authorized.")

    @classmethod
    def already_exists(cls, name: str) -> SnowflakeError:
        return cls("002002", "42710", f"SQL compilation error:\nObject '{name}' already exists.")

    @classmethod
    def unsupported(cls, feature: str) -> SnowflakeError:
        # Snowflake's wording for features it lacks, plus a pointer to where the gap really is.
        return cls(
            "000002", "0A000", f"Unsupported feature '{feature}' (not emulated by the airlock Snowflake emulator)."
        )

    @classmethod
    def no_current(cls, what: str, operation: str) -> SnowflakeError:
        code = "090105" if what == "database" else "090106"
        return cls(
            code,
            "22000",
            f"Cannot perform {operation}. This session does not have a current {what}. "
            f"Call 'USE {what.upper()}', or use a qualified name.",
        )

    @classmethod
    def role_does_not_exist(cls, role: str) -> SnowflakeError:
        return cls.does_not_exist("Role", role)

    @classmethod
    def no_active_warehouse(cls) -> SnowflakeError:
        return cls(
            "000606",
            "57P03",
            "No active warehouse selected in the current session.  "
            "Select an active warehouse with the 'use warehouse' command.\n",
        )

    @classmethod
    def object_missing_or_forbidden(cls) -> SnowflakeError:
        return cls(
            "002043", "02000", "SQL compilation error:\nObject does not exist, or operation cannot be performed."
        )


def syntax_error(sql: str, offset: int, detail: str) -> SnowflakeError:
    """Snowflake's "syntax error line L at position P unexpected 'x'." (1-based line, 0-based column)."""
    line = sql.count("\n", 0, offset) + 1
    column = offset - (sql.rfind("\n", 0, offset) + 1)
    return SnowflakeError.syntax(f"syntax error line {line} at position {column} {detail}.")
