//! Tests become queries that return failing rows; their results become the
//! gate's verdict: pass, warn (reported, does not block) or block.

use anyhow::{bail, Result};
use serde_json::Value;

use crate::project::{Node, TestKind};
use crate::render::Relation;
use crate::warehouse::{Dialect, Rows};

/// Sample rows kept per failing test.
pub const SAMPLE_ROWS: usize = 5;

/// The query that returns the failing rows of a generic test.
pub fn generic_test_sql(dialect: Dialect, name: &str, column: &str, args: &serde_json::Map<String, Value>, model: &Relation, to: Option<&Relation>) -> Result<String> {
    // dbt writes the column unquoted: it folds as the warehouse folds names
    let col = dialect.quote(&dialect.fold(column));
    Ok(match name {
        "not_null" => format!("SELECT * FROM {} WHERE {col} IS NULL", model.rendered),
        "unique" => format!(
            "SELECT {col} AS unique_field, COUNT(*) AS n_records FROM {} WHERE {col} IS NOT NULL GROUP BY {col} HAVING COUNT(*) > 1",
            model.rendered
        ),
        "accepted_values" => {
            let Some(Value::Array(values)) = args.get("values") else { bail!("accepted_values needs a list of values") };
            let quote = args.get("quote").and_then(Value::as_bool).unwrap_or(true);
            let list = values
                .iter()
                .map(|v| match v {
                    Value::String(s) if quote => dialect.literal(s),
                    Value::String(s) => s.clone(),
                    other if quote => dialect.literal(&other.to_string()),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "SELECT {col} AS value_field, COUNT(*) AS n_records FROM {} WHERE {col} NOT IN ({list}) GROUP BY {col}",
                model.rendered
            )
        }
        "relationships" => {
            let Some(to) = to else { bail!("relationships needs 'to'") };
            let field = args.get("field").and_then(Value::as_str).unwrap_or("id");
            let field = dialect.quote(&dialect.fold(field));
            format!(
                "SELECT child.{col} AS from_field FROM {} AS child LEFT JOIN {} AS parent ON child.{col} = parent.{field} \
                 WHERE child.{col} IS NOT NULL AND parent.{field} IS NULL",
                model.rendered, to.rendered
            )
        }
        other => bail!("unknown test '{other}'"),
    })
}

/// An `error_if` / `warn_if` condition as dbt writes it: a comparison of the
/// failure count with a whole number (`!= 0`, `>10`, `>= 5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition {
    op: Op,
    n: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Condition {
    /// dbt's default for both: any failing row.
    pub const ANY: Condition = Condition { op: Op::Ne, n: 0 };

    pub fn parse(text: &str) -> Result<Condition> {
        let t = text.trim();
        let (op, rest) = [("!=", Op::Ne), ("<>", Op::Ne), (">=", Op::Ge), ("<=", Op::Le), ("==", Op::Eq), (">", Op::Gt), ("<", Op::Lt), ("=", Op::Eq)]
            .into_iter()
            .find_map(|(p, op)| t.strip_prefix(p).map(|r| (op, r)))
            .ok_or_else(|| anyhow::anyhow!("'{text}' is not a comparison like '>10' or '!= 0'"))?;
        let n = rest.trim().parse::<u64>().map_err(|_| anyhow::anyhow!("'{text}' is not a comparison with a whole number like '>10' or '!= 0'"))?;
        Ok(Condition { op, n })
    }

    pub fn holds(&self, failures: u64) -> bool {
        match self.op {
            Op::Eq => failures == self.n,
            Op::Ne => failures != self.n,
            Op::Gt => failures > self.n,
            Op::Ge => failures >= self.n,
            Op::Lt => failures < self.n,
            Op::Le => failures <= self.n,
        }
    }
}

/// How a test's failure count becomes a verdict: dbt's `severity`,
/// `error_if` and `warn_if`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub severity_warn: bool,
    pub error_if: Condition,
    pub warn_if: Condition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl Thresholds {
    /// The thresholds of a test node; conditions were checked at load.
    pub fn of(node: &Node) -> Thresholds {
        let cond = |c: &Option<String>| c.as_deref().and_then(|c| Condition::parse(c).ok()).unwrap_or(Condition::ANY);
        Thresholds { severity_warn: node.severity() == crate::project::Severity::Warn, error_if: cond(&node.config.error_if), warn_if: cond(&node.config.warn_if) }
    }

    /// As dbt decides: with severity error, `error_if` fails the test, else
    /// `warn_if` warns; with severity warn only `warn_if` counts.
    pub fn verdict(&self, failures: u64) -> Verdict {
        if !self.severity_warn && self.error_if.holds(failures) {
            Verdict::Fail
        } else if self.warn_if.holds(failures) {
            Verdict::Warn
        } else {
            Verdict::Pass
        }
    }
}

/// The relation a generic test reads: the model itself, or with dbt's
/// `where` config the model filtered first (as dbt's `get_where_subquery`).
/// `alias`: named `dbt_subquery` as dbt names it (for test macros, which
/// may rely on it); airlock's built-in tests alias it themselves.
pub fn where_subquery(model: &Relation, where_: Option<&str>, alias: bool) -> Relation {
    match where_ {
        None => model.clone(),
        Some(w) => {
            let name = if alias { " AS dbt_subquery" } else { "" };
            Relation { rendered: format!("(SELECT * FROM {} WHERE {w}){name}", model.rendered), ..model.clone() }
        }
    }
}

/// A test's failing-rows query with dbt's `limit` config: at most `limit`
/// failing rows are counted.
pub fn with_limit(test_sql: &str, limit: Option<u64>) -> String {
    match limit {
        None => test_sql.to_string(),
        Some(n) => format!("SELECT * FROM (\n{test_sql}\n) AS airlock_limited LIMIT {n}"),
    }
}

/// Wrap a failing-rows query: the count of failures and the first rows.
pub fn gate_query(test_sql: &str) -> String {
    format!("SELECT COUNT(*) OVER () AS airlock_failures, * FROM (\n{test_sql}\n) AS airlock_test LIMIT {SAMPLE_ROWS}")
}

/// Read the result of [`gate_query`]: number of failing rows and a sample.
/// The count here is for display; the builder reads it strictly (an
/// unreadable count is no verdict).
pub fn read_result(rows: Rows) -> (u64, Rows) {
    let failures = rows.rows.first().and_then(|r| r.first().cloned().flatten()).and_then(|n| n.parse().ok()).unwrap_or(0);
    let sample = Rows {
        columns: rows.columns.iter().skip(1).cloned().collect(),
        rows: rows.rows.into_iter().map(|r| r.into_iter().skip(1).collect()).collect(),
    };
    (failures, sample)
}

/// A human description of a test for reports: `unique(order_id)` / singular file.
pub fn describe(node: &Node) -> String {
    match &node.test {
        Some(TestKind::Generic { name, column, .. }) => format!("{name}({column})"),
        Some(TestKind::Singular { .. }) => node.path.display().to_string(),
        None => node.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> Relation {
        Relation { database: None, schema: "m".into(), identifier: s.into(), rendered: Dialect::DuckDb.relation("m", s) }
    }

    #[test]
    fn accepted_values_quotes_values_and_column() {
        let mut args = serde_json::Map::new();
        args.insert("values".into(), serde_json::json!(["a", "it's"]));
        let sql = generic_test_sql(Dialect::DuckDb, "accepted_values", "status", &args, &rel("orders"), None).unwrap();
        assert!(sql.contains(r#""status" NOT IN ('a', 'it''s')"#), "{sql}");
    }

    #[test]
    fn results_split_count_from_sample() {
        let rows = Rows { columns: vec!["airlock_failures".into(), "id".into()], rows: vec![vec![Some("7".into()), Some("1".into())]] };
        let (n, sample) = read_result(rows);
        assert_eq!(n, 7);
        assert_eq!(sample.columns, vec!["id".to_string()]);
    }
}
