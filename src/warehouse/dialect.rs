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

    /// Whether the warehouse compares identifiers case-insensitively even when
    /// quoted (DuckDB); Snowflake and BigQuery compare quoted names exactly.
    pub fn case_insensitive_names(self) -> bool {
        self == Dialect::DuckDb
    }

    /// The name an unquoted identifier becomes in this warehouse: Snowflake
    /// folds it to upper case (so `orders` is `ORDERS`, the object dbt-snowflake
    /// creates and users query); DuckDB and BigQuery keep it as written.
    pub fn fold(self, ident: &str) -> String {
        match self {
            Dialect::Snowflake => ident.to_uppercase(),
            Dialect::DuckDb | Dialect::BigQuery => ident.to_string(),
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

    /// `database.schema.name` (Snowflake's names in another database), or
    /// `schema.name` without a database; each part quoted.
    pub fn qualified(self, database: Option<&str>, schema: &str, name: &str) -> String {
        match database {
            Some(db) => format!("{}.{}", self.quote(db), self.relation(schema, name)),
            None => self.relation(schema, name),
        }
    }

    /// A scalar query over `relation`: its row count and an order-independent
    /// checksum of its content, as `count:checksum`.
    pub fn checksum_sql(self, relation: &str) -> String {
        match self {
            Dialect::DuckDb => format!("SELECT COUNT(*) || ':' || COALESCE(SUM(hash(t::VARCHAR)::HUGEINT), 0) FROM {relation} AS t"),
            Dialect::Snowflake => format!("SELECT COUNT(*) || ':' || COALESCE(HASH_AGG(*), 0) FROM {relation}"),
            Dialect::BigQuery => format!("SELECT CONCAT(CAST(COUNT(*) AS STRING), ':', CAST(COALESCE(BIT_XOR(FARM_FINGERPRINT(TO_JSON_STRING(t))), 0) AS STRING)) FROM {relation} AS t"),
        }
    }

    /// `schema.name` as [`Dialect::relation`] writes it, back into its parts.
    pub fn split_relation(self, rendered: &str) -> Option<(String, String)> {
        match self.split_qualified(rendered)? {
            (None, schema, name) => Some((schema, name)),
            _ => None,
        }
    }

    /// `[database.]schema.name` as [`Dialect::qualified`] writes it, back into
    /// its parts.
    pub fn split_qualified(self, rendered: &str) -> Option<(Option<String>, String, String)> {
        let q = match self {
            Dialect::DuckDb | Dialect::Snowflake => '"',
            Dialect::BigQuery => '`',
        };
        let mut parts = Vec::new();
        let mut chars = rendered.chars().peekable();
        while let Some(c) = chars.next() {
            if c != q {
                return None;
            }
            let mut part = String::new();
            loop {
                match chars.next()? {
                    '\\' if q == '`' => part.push(chars.next()?),
                    ch if ch == q && q == '"' && chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    ch if ch == q => break,
                    ch => part.push(ch),
                }
            }
            parts.push(part);
            match chars.next() {
                None => break,
                Some('.') => {}
                Some(_) => return None,
            }
        }
        match <[String; 3]>::try_from(parts) {
            Ok([db, schema, name]) => Some((Some(db), schema, name)),
            Err(parts) => <[String; 2]>::try_from(parts).ok().map(|[schema, name]| (None, schema, name)),
        }
    }

    /// A timestamp column as `YYYY-MM-DD HH:MM:SS` text.
    pub fn timestamp_text(self, column: &str) -> String {
        match self {
            Dialect::DuckDb => format!("strftime({column}, '%Y-%m-%d %H:%M:%S')"),
            Dialect::Snowflake => format!("TO_CHAR({column}, 'YYYY-MM-DD HH24:MI:SS')"),
            Dialect::BigQuery => format!("FORMAT_TIMESTAMP('%Y-%m-%d %H:%M:%S', {column})"),
        }
    }

    /// A string literal. Snowflake and BigQuery treat `\\` inside `'…'` as an
    /// escape character, so it is escaped too.
    pub fn literal(self, value: &str) -> String {
        match self {
            Dialect::DuckDb => format!("'{}'", value.replace('\'', "''")),
            Dialect::Snowflake => format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''")),
            Dialect::BigQuery => format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_split_back_into_their_parts() {
        for d in [Dialect::DuckDb, Dialect::BigQuery] {
            assert_eq!(d.split_relation(&d.relation("a\"b`c", "x.y")), Some(("a\"b`c".to_string(), "x.y".to_string())));
        }
        assert_eq!(Dialect::DuckDb.split_relation("main.orders"), None);
        let d = Dialect::Snowflake;
        assert_eq!(d.split_qualified(&d.qualified(Some("DB\"1"), "S", "T")), Some((Some("DB\"1".into()), "S".into(), "T".into())));
        assert_eq!(d.split_relation(&d.qualified(Some("DB"), "S", "T")), None, "a name in another database is not a schema.name");
    }

    #[test]
    fn names_cannot_escape_their_quotes() {
        assert_eq!(Dialect::DuckDb.quote(r#"a"; drop table x; --"#), r#""a""; drop table x; --""#);
        assert_eq!(Dialect::BigQuery.quote("a`b"), "`a\\`b`");
        assert_eq!(Dialect::DuckDb.literal("it's"), "'it''s'");
        // a trailing backslash must not escape Snowflake's closing quote
        assert_eq!(Dialect::Snowflake.literal(r"a\' or 1=1 --\"), r"'a\\'' or 1=1 --\\'");
        assert_eq!(Dialect::Snowflake.quote("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn snowflake_folds_unquoted_names_to_upper_case() {
        assert_eq!(Dialect::Snowflake.fold("stg_orders"), "STG_ORDERS");
        assert_eq!(Dialect::DuckDb.fold("stg_orders"), "stg_orders");
        assert_eq!(Dialect::BigQuery.fold("Stg"), "Stg");
    }
}
