//! Privileges on prod survive every publish, verified. Swaps and clones do
//! not carry everything: a cloned or swapped-in schema brings the audit
//! location's container grants (none), a table re-created by `CREATE OR
//! REPLACE` or cloned from audit starts with none. So before a publish airlock
//! reads what prod grants (`SHOW GRANTS ON …`), grants the same on the audit
//! location before a swap (so readers never lose access), grants it again on
//! prod after the publish (GRANT is idempotent), and then reads prod again: a
//! difference stops the release before it is recorded as published.
//!
//! Only warehouses with privileges on objects take part (Snowflake); the
//! others have no statements here.

use std::collections::BTreeSet;

use anyhow::{Context, Result};

use crate::warehouse::{Dialect, ObjectKind, Rows, Warehouse};

/// A prod object whose privileges are kept: a database, a schema, or a table
/// or view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// the database, named where it is not the session's (and for the
    /// database itself)
    pub database: Option<String>,
    /// empty for the database itself
    pub schema: String,
    /// None for the schema itself
    pub name: Option<String>,
    /// TABLE or VIEW for objects
    pub kind: Option<ObjectKind>,
}

impl Target {
    pub fn database(database: &str) -> Target {
        Target { database: Some(database.to_string()), schema: String::new(), name: None, kind: None }
    }

    pub fn schema(schema: &str) -> Target {
        Target { database: None, schema: schema.to_string(), name: None, kind: None }
    }

    pub fn object(schema: &str, name: &str, kind: ObjectKind) -> Target {
        Target { database: None, schema: schema.to_string(), name: Some(name.to_string()), kind: Some(kind) }
    }

    /// `DATABASE "D"`, `SCHEMA "S"` or `TABLE "S"."T"` (qualified by the
    /// database where it is named), as GRANT and SHOW GRANTS name it.
    fn on(&self, d: Dialect) -> String {
        let db = self.database.as_deref();
        match (&self.name, self.kind) {
            (Some(name), Some(ObjectKind::View)) => format!("VIEW {}", d.qualified(db, &self.schema, name)),
            (Some(name), _) => format!("TABLE {}", d.qualified(db, &self.schema, name)),
            (None, _) if self.schema.is_empty() => format!("DATABASE {}", d.quote(db.unwrap_or_default())),
            (None, _) => match db {
                Some(db) => format!("SCHEMA {}.{}", d.quote(db), d.quote(&self.schema)),
                None => format!("SCHEMA {}", d.quote(&self.schema)),
            },
        }
    }

    /// The same object in another schema (its audit twin).
    pub fn moved_to(&self, schema: &str) -> Target {
        Target { schema: schema.to_string(), ..self.clone() }
    }

    /// The same object in another database (its twin in an audit database;
    /// the database itself becomes that database).
    pub fn in_database(&self, database: &str) -> Target {
        Target { database: Some(database.to_string()), ..self.clone() }
    }

    fn shown(&self) -> String {
        match &self.name {
            Some(n) => format!("{}.{n}", self.schema),
            None if self.schema.is_empty() => format!("database {}", self.database.as_deref().unwrap_or_default()),
            None => format!("schema {}", self.schema),
        }
    }
}

/// One privilege held on a target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    /// which object (compared by schema and name: a table that became a view
    /// keeps its readers)
    pub schema: String,
    pub name: Option<String>,
    pub privilege: String,
    /// ROLE, DATABASE_ROLE, SHARE, …
    pub granted_to: String,
    pub grantee: String,
    pub grant_option: bool,
}

impl Grant {
    fn describe(&self) -> String {
        let on = match &self.name {
            Some(n) => format!("{}.{n}", self.schema),
            None if self.schema.is_empty() => "the prod database".to_string(),
            None => format!("schema {}", self.schema),
        };
        format!("{} on {on} to {} {}{}", self.privilege, self.granted_to.to_lowercase(), self.grantee, if self.grant_option { " with grant option" } else { "" })
    }
}

/// Whether airlock keeps privileges on this warehouse.
pub fn applies(d: Dialect) -> bool {
    d == Dialect::Snowflake
}

/// Every privilege on `targets` now. Targets that do not exist are skipped
/// by the caller (it passes only what the catalog holds).
pub async fn read(wh: &dyn Warehouse, targets: &[Target]) -> Result<BTreeSet<Grant>> {
    let d = wh.dialect();
    let mut out = BTreeSet::new();
    for t in targets {
        let rows = wh.query(&format!("SHOW GRANTS ON {}", t.on(d))).await.with_context(|| format!("reading the privileges on {}", t.shown()))?;
        out.extend(parse(&rows, t).with_context(|| format!("reading the privileges on {}", t.shown()))?);
    }
    Ok(out)
}

fn parse(rows: &Rows, t: &Target) -> Result<Vec<Grant>> {
    let col = |name: &str| rows.columns.iter().position(|c| c.eq_ignore_ascii_case(name)).with_context(|| format!("SHOW GRANTS returned no column '{name}'"));
    let (privilege, granted_to, grantee, option) = (col("privilege")?, col("granted_to")?, col("grantee_name")?, col("grant_option")?);
    Ok(rows
        .rows
        .iter()
        .map(|r| {
            let get = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            Grant {
                schema: t.schema.clone(),
                name: t.name.clone(),
                privilege: get(privilege),
                granted_to: get(granted_to),
                grantee: get(grantee),
                grant_option: get(option).eq_ignore_ascii_case("true"),
            }
        })
        .collect())
}

/// GRANT statements that give `onto` every privilege `grants` records for
/// `from` (OWNERSHIP excepted: it moves only by an explicit transfer).
pub fn statements(d: Dialect, grants: &BTreeSet<Grant>, from: &Target, onto: &Target) -> Vec<String> {
    grants
        .iter()
        .filter(|g| g.schema == from.schema && g.name == from.name && !g.privilege.eq_ignore_ascii_case("OWNERSHIP"))
        .map(|g| {
            let to = match g.granted_to.to_ascii_uppercase().as_str() {
                "DATABASE_ROLE" => "DATABASE ROLE".to_string(),
                other => other.to_string(),
            };
            format!("GRANT {} ON {} TO {to} {}{}", g.privilege, onto.on(d), d.quote(&g.grantee), if g.grant_option { " WITH GRANT OPTION" } else { "" })
        })
        .collect()
}

/// What differs between the privileges before and after, one line each.
pub fn diff(before: &BTreeSet<Grant>, after: &BTreeSet<Grant>) -> Vec<String> {
    let mut out: Vec<String> = before.difference(after).map(|g| format!("lost {}", g.describe())).collect();
    out.extend(after.difference(before).map(|g| format!("gained {}", g.describe())));
    out
}

/// The check a publish ends with: the privileges prod had before, and the
/// targets to read again (each object as the publish leaves it).
#[derive(Debug, Clone)]
pub struct Check {
    pub before: BTreeSet<Grant>,
    pub after_targets: Vec<Target>,
}

impl Check {
    /// The differences now, one line each (empty: intact).
    pub async fn run(&self, wh: &dyn Warehouse) -> Result<Vec<String>> {
        let after = read(wh, &self.after_targets).await?;
        Ok(diff(&self.before, &after))
    }
}

/// What a publish of `changes` keeps privileges on: the prod schemas that
/// exist (an empty one too: its grants are what readers were given), and
/// every prod object it replaces (not one it removes). Returns the targets
/// as they are before, and as the publish leaves them.
fn targets(changes: &[crate::publish::Change], existing_schemas: &[String], database: Option<&str>) -> (Vec<Target>, Vec<Target>) {
    let mut before: Vec<Target> = database.map(Target::database).into_iter().collect();
    before.extend(existing_schemas.iter().map(|s| Target::schema(s)));
    let mut after = before.clone();
    for c in changes {
        let new_kind = match c.desired {
            crate::publish::Desired::Absent => continue,
            crate::publish::Desired::View { .. } | crate::publish::Desired::ViewDdl { .. } => ObjectKind::View,
            _ => ObjectKind::Table,
        };
        if let Some(prev) = &c.prev {
            before.push(Target::object(&c.schema, &c.name, prev.kind));
            after.push(Target::object(&c.schema, &c.name, new_kind));
        }
    }
    // in a database-level publish every name says which database: a
    // session's current database is the one its name denotes, whatever a
    // swap did under it
    let qualify = |ts: Vec<Target>| match database {
        Some(db) => ts.into_iter().map(|t| t.in_database(db)).collect(),
        None => ts,
    };
    (qualify(before), qualify(after))
}

/// What a publish of `changes` into `schemas` needs: the privileges prod
/// holds now, and the check it ends with. Nothing where the warehouse keeps
/// no privileges. `database`: prod's database, when the publish swaps it
/// whole (its own privileges are kept too).
pub async fn before_publish(wh: &dyn Warehouse, changes: &[crate::publish::Change], schemas: &[String], database: Option<&str>) -> Result<(BTreeSet<Grant>, Option<Check>)> {
    if !applies(wh.dialect()) {
        return Ok((BTreeSet::new(), None));
    }
    let existing = existing_schemas(wh, schemas, database).await?;
    let (before, after_targets) = targets(changes, &existing, database);
    let grants = read(wh, &before).await?;
    Ok((grants.clone(), Some(Check { before: grants, after_targets })))
}

/// Which of `schemas` exist now (whether or not they hold anything).
async fn existing_schemas(wh: &dyn Warehouse, schemas: &[String], database: Option<&str>) -> Result<Vec<String>> {
    if schemas.is_empty() {
        return Ok(vec![]);
    }
    let d = wh.dialect();
    let list = schemas.iter().map(|s| d.literal(s)).collect::<Vec<_>>().join(", ");
    let info = match database {
        Some(db) => format!("{}.INFORMATION_SCHEMA", d.quote(db)),
        None => "INFORMATION_SCHEMA".into(),
    };
    let rows = wh.query(&format!("SELECT SCHEMA_NAME FROM {info}.SCHEMATA WHERE SCHEMA_NAME IN ({list})")).await.context("finding the prod schemas")?;
    Ok(rows.rows.into_iter().filter_map(|r| r.into_iter().next().flatten()).filter(|s| schemas.contains(s)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(name: Option<&str>, privilege: &str, grantee: &str) -> Grant {
        Grant { schema: "ANALYTICS".into(), name: name.map(str::to_string), privilege: privilege.into(), granted_to: "ROLE".into(), grantee: grantee.into(), grant_option: false }
    }

    #[test]
    fn regrants_every_privilege_but_ownership_on_the_new_object() {
        let g: BTreeSet<Grant> = [grant(Some("ORDERS"), "SELECT", "REPORTER"), grant(Some("ORDERS"), "OWNERSHIP", "SYSADMIN"), grant(None, "USAGE", "REPORTER")].into();
        let from = Target::object("ANALYTICS", "ORDERS", ObjectKind::Table);
        let onto = from.moved_to("ANALYTICS__AUDIT");
        assert_eq!(statements(Dialect::Snowflake, &g, &from, &onto), vec![r#"GRANT SELECT ON TABLE "ANALYTICS__AUDIT"."ORDERS" TO ROLE "REPORTER""#]);
        let schema = Target::schema("ANALYTICS");
        assert_eq!(statements(Dialect::Snowflake, &g, &schema, &schema), vec![r#"GRANT USAGE ON SCHEMA "ANALYTICS" TO ROLE "REPORTER""#]);
    }

    #[test]
    fn a_grantee_name_cannot_inject_sql() {
        let g: BTreeSet<Grant> = [grant(None, "USAGE", r#"X" ; DROP SCHEMA PROD; --"#)].into();
        let s = Target::schema("ANALYTICS");
        assert_eq!(statements(Dialect::Snowflake, &g, &s, &s), vec![r#"GRANT USAGE ON SCHEMA "ANALYTICS" TO ROLE "X"" ; DROP SCHEMA PROD; --""#]);
    }

    #[test]
    fn differences_name_what_was_lost_and_gained() {
        let before: BTreeSet<Grant> = [grant(Some("ORDERS"), "SELECT", "REPORTER")].into();
        let after: BTreeSet<Grant> = [grant(Some("ORDERS"), "SELECT", "ANALYST")].into();
        assert_eq!(diff(&before, &after), vec!["lost SELECT on ANALYTICS.ORDERS to role REPORTER", "gained SELECT on ANALYTICS.ORDERS to role ANALYST"]);
        assert!(diff(&before, &before).is_empty());
    }
}
