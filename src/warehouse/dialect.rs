//! Identifier quoting and literals per SQL dialect. Every name airlock puts in
//! SQL goes through here, so no name from a project can inject SQL.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    DuckDb,
    Snowflake,
    BigQuery,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::DuckDb => "duckdb",
            Dialect::Snowflake => "snowflake",
            Dialect::BigQuery => "bigquery",
        }
    }

    pub fn parse(name: &str) -> Option<Dialect> {
        match name {
            "duckdb" => Some(Dialect::DuckDb),
            "snowflake" => Some(Dialect::Snowflake),
            "bigquery" => Some(Dialect::BigQuery),
            _ => None,
        }
    }

    /// The product name, for messages.
    pub fn title(self) -> &'static str {
        match self {
            Dialect::DuckDb => "DuckDB",
            Dialect::Snowflake => "Snowflake",
            Dialect::BigQuery => "BigQuery",
        }
    }

    /// Quote one identifier.
    pub fn quote(self, ident: &str) -> String {
        match self {
            Dialect::DuckDb | Dialect::Snowflake => format!("\"{}\"", ident.replace('"', "\"\"")),
            Dialect::BigQuery => format!("`{}`", ident.replace('\\', "\\\\").replace('`', "\\`")),
        }
    }

    /// `schema.name`, each part quoted.
    pub fn relation(self, schema: &str, name: &str) -> String {
        format!("{}.{}", self.quote(schema), self.quote(name))
    }

    /// A string literal.
    pub fn literal(self, value: &str) -> String {
        match self {
            Dialect::DuckDb | Dialect::Snowflake => format!("'{}'", value.replace('\'', "''")),
            Dialect::BigQuery => format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_their_quotes() {
        assert_eq!(Dialect::DuckDb.quote(r#"a"; drop table x; --"#), r#""a""; drop table x; --""#);
        assert_eq!(Dialect::BigQuery.quote("a`b"), "`a\\`b`");
        assert_eq!(Dialect::DuckDb.literal("it's"), "'it''s'");
    }
}
