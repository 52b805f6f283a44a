"""airlock's Snowflake emulator: fakesnow plus the Snowflake behaviour it lacks.

See ../README.md for what is emulated and why.
"""
