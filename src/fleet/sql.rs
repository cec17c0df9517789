//! The fleet check's one query of the shared audit table: the event lines written since
//! a time, newest first. It reads only the `kind`, `time` and `line` columns, so it works
//! however the table lays out its chains; the connection is the audit sink's own
//! ([`crate::audit::postgres::pg_config`], [`crate::audit::postgres::connect`]).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_postgres::Client;

/// Most event lines one read returns.
pub const MAX_ROWS: usize = 10_000;

/// The query: `$1` is RFC 3339 text (the time index bounds the scan).
pub fn recent_events(table: &str) -> Result<String, String> {
    if !crate::config::valid_table_name(table) {
        return Err(format!(
            "`{table}` is not a lower-case SQL name (a-z, 0-9, _)"
        ));
    }
    Ok(format!(
        "SELECT line FROM {table} WHERE kind = 'event' AND time > CAST($1::text AS timestamptz) ORDER BY time DESC LIMIT {MAX_ROWS}"
    ))
}

/// Connects with the audit sink's connection settings.
pub async fn connect(conn: &str) -> Result<Client, String> {
    let cfg = crate::audit::postgres::pg_config(conn)?;
    crate::audit::postgres::connect(&cfg).await
}

/// The event lines of `table` written after `since`, newest first.
pub async fn read_events(
    client: &Client,
    table: &str,
    since: OffsetDateTime,
) -> Result<Vec<String>, String> {
    let sql = recent_events(table)?;
    let since = since.format(&Rfc3339).map_err(|e| e.to_string())?;
    let rows = client
        .query(&sql, &[&since])
        .await
        .map_err(|e| format!("cannot read the fleet's events: {e}"))?;
    rows.iter()
        .map(|r| {
            r.try_get::<_, String>(0)
                .map_err(|e| format!("cannot read the fleet's events: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_only_a_valid_table() {
        let q = recent_events("bordergate_audit").unwrap();
        assert!(q.starts_with("SELECT line FROM bordergate_audit WHERE kind = 'event'"));
        assert!(recent_events("x; DROP TABLE y").is_err());
    }
}
