//! The fleet check's queries: the event lines of the shared audit table written since a
//! time, newest first (only its `kind`, `time` and `line` columns, so it works however the
//! table lays out its chains), and which replicas' sessions hold their chain's lock right
//! now (`pg_locks`); the connection is the audit sink's own
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

/// Of the replicas `names`, those whose audit writer's session holds its chain's advisory
/// lock (see `lock_chain` in the audit store's schema): a replica killed, crashed or cut off
/// from the database holds none. `$1` the table, `$2` the names. A bigint advisory lock
/// shows in `pg_locks` as `classid` (high 32 bits), `objid` (low 32 bits), `objsubid` 1.
pub const HELD_CHAINS: &str = "SELECT r.n FROM unnest($2::text[]) AS r(n)
CROSS JOIN LATERAL (SELECT hashtextextended('bordergate-chain:' || $1::text || ':' || r.n, 0) AS k) AS h
WHERE EXISTS (
  SELECT 1 FROM pg_locks l
  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
    AND l.classid::int8 = ((h.k >> 32) & 4294967295) AND l.objid::int8 = (h.k & 4294967295))";

/// The names of `names` whose chain lock is held now.
pub async fn held_chains(
    client: &Client,
    table: &str,
    names: &[String],
) -> Result<Vec<String>, String> {
    let rows = client
        .query(HELD_CHAINS, &[&table, &names])
        .await
        .map_err(|e| format!("cannot read the replicas' sessions: {e}"))?;
    rows.iter()
        .map(|r| {
            r.try_get::<_, String>(0)
                .map_err(|e| format!("cannot read the replicas' sessions: {e}"))
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
