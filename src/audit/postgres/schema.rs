//! The PostgreSQL schema of the audit store: table names, the migration `bordergate audit
//! migrate` runs (tables, append-only triggers, grants), the statements the writer
//! prepares, and the start-up check of a replica's chain.
//!
//! Layout (schema version [`VERSION`]):
//! - `<t>_batches`: one row per committed batch of one chain — `chain`, `first` and `last`
//!   seq, `committed` (the writer's clock when it wrote the batch: no record in it is
//!   newer) and `lines`, the records' lines in seq order, `PRIMARY KEY (chain, first)`.
//!   Every replica appends to its own hash chain (`chain` = its name), so replicas never
//!   wait for each other; a batch costs the database one row, not one per record, which is
//!   what lets one PostgreSQL keep up with a fleet (see the README, "A fleet on
//!   PostgreSQL"). The insert only lands when the batch continues its chain's last batch;
//! - `<t>`: a view with one row per record (`chain`, `seq`, `prev`, `hash`, `kind`,
//!   `time`, `request_id`, `org`, `sub`, `dataset`, `destination`, `decision`, `rule`,
//!   `line`), for SQL readers;
//! - `<t>_heads`: one row per committed batch — the chain's head after it — written by the
//!   same statement as the batch. A chain whose newest rows were removed no longer reaches
//!   its recorded head; a chain removed whole still has heads;
//! - `<t>_schema`: the applied schema versions;
//! - `<t>_v2`: a store migrated from version 2 keeps its one-row-per-record table under
//!   this name, untouched (its records are also copied into `<t>_batches`).
//!
//! Triggers refuse UPDATE, DELETE and TRUNCATE on every table (and UPDATE and DELETE
//! through the view), whoever asks; the gateway's role needs only SELECT and INSERT
//! (`--grant`).

use tokio_postgres::Client;

use super::pg_error;
use crate::audit::line::{GENESIS, HASH_LEN};
use crate::audit::verify::{Chain, check_from};

/// How many of a chain's last rows the start-up check reads.
pub(crate) const TAIL_ROWS: i64 = 1000;

/// The schema version this build writes.
pub(crate) const VERSION: i32 = 3;

/// The chain that rows of a version-1 table (one chain shared by every gateway) belong to
/// after `audit migrate`.
pub(crate) const LEGACY_CHAIN: &str = "shared";

/// The SQL of one store: `<table>_batches`, the `<table>` view, `<table>_heads`,
/// `<table>_schema`.
#[derive(Clone, Debug)]
pub(crate) struct Sql {
    pub table: String,
    pub batches: String,
    pub heads: String,
    pub schema: String,
}

impl Sql {
    /// `table` must have passed [`crate::config::valid_table_name`]; it is spliced into SQL.
    pub fn new(table: &str) -> Result<Sql, String> {
        if !crate::config::valid_table_name(table) {
            return Err(format!(
                "`{table}` is not a lower-case SQL name (a-z, 0-9, _)"
            ));
        }
        Ok(Sql {
            table: table.to_owned(),
            batches: format!("{table}_batches"),
            heads: format!("{table}_heads"),
            schema: format!("{table}_schema"),
        })
    }

    /// Every table of the store, for grants and triggers (`extra`: tables other modules add).
    fn tables<'a>(&'a self, extra: &'a [String]) -> impl Iterator<Item = &'a str> {
        [self.batches.as_str(), &self.heads, &self.schema]
            .into_iter()
            .chain(extra.iter().map(String::as_str))
    }

    /// Creates (or upgrades) the store; idempotent and safe to run from many hosts at once.
    /// `grant`: the role the gateways connect as, given SELECT and INSERT only.
    pub fn migration(&self, grant: Option<&str>) -> String {
        let (t, b, h, s) = (&self.table, &self.batches, &self.heads, &self.schema);
        let genesis = hex::encode(GENESIS);
        let (extra, extra_ddl) = other_tables(t);
        let batches = format!(
            "CREATE TABLE IF NOT EXISTS {b} (
  chain TEXT COLLATE \"C\" NOT NULL,
  first BIGINT NOT NULL,
  last BIGINT NOT NULL,
  committed TIMESTAMPTZ NOT NULL,
  lines TEXT[] {{compression}} NOT NULL,
  PRIMARY KEY (chain, first),
  CHECK (first >= 1 AND last >= first)
)"
        );
        let mut sql = format!(
            "SELECT pg_advisory_xact_lock(hashtext('bordergate-audit:{t}'));
CREATE TABLE IF NOT EXISTS {s} (
  version INT PRIMARY KEY,
  applied TIMESTAMPTZ NOT NULL DEFAULT now()
);
DO $m$
BEGIN
  -- lz4 where the server has it: a batch's lines are compressed on their way to disk.
  EXECUTE $q${lz4}$q$;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
  EXECUTE $q${plain}$q$;
END
$m$;
CREATE INDEX IF NOT EXISTS {b}_committed ON {b} (committed);
DO $m$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relname = '{t}' AND c.relkind = 'r') THEN
    -- Version 1: one chain shared by every gateway, its head in `{t}_head`.
    IF NOT EXISTS (
         SELECT 1 FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = '{t}' AND column_name = 'chain') THEN
      ALTER TABLE {t} ADD COLUMN chain TEXT NOT NULL DEFAULT '{LEGACY_CHAIN}';
      ALTER TABLE {t} ALTER COLUMN chain DROP DEFAULT;
      ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {t}_pkey;
      ALTER TABLE {t} ADD PRIMARY KEY (chain, seq);
    END IF;
    -- Version 2: one row per record. The table is kept as it is, under a new name, and
    -- its records are copied into batches of up to 1,000.
    ALTER TABLE {t} RENAME TO {t}_v2;
    INSERT INTO {b} (chain, first, last, committed, lines)
      SELECT chain, min(seq), max(seq), coalesce(max(time), now()), array_agg(line ORDER BY seq)
      FROM {t}_v2 GROUP BY chain, (seq - 1) / 1000;
  END IF;
END
$m$;
CREATE TABLE IF NOT EXISTS {h} (
  chain TEXT NOT NULL,
  seq BIGINT NOT NULL,
  hash TEXT NOT NULL,
  time TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (chain, seq)
);
DO $m$
BEGIN
  IF to_regclass('{t}_head') IS NOT NULL THEN
    INSERT INTO {h} (chain, seq, hash)
      SELECT '{LEGACY_CHAIN}', seq, hash FROM {t}_head WHERE seq > 0 AND hash <> '{genesis}'
      ON CONFLICT DO NOTHING;
  END IF;
END
$m$;
CREATE OR REPLACE VIEW {t} AS
  SELECT b.chain::text AS chain, b.first + u.o - 1 AS seq, r ->> 'prev' AS prev,
         r ->> 'hash' AS hash, r ->> 'kind' AS kind, (r ->> 'time')::timestamptz AS time,
         r ->> 'request_id' AS request_id, r -> 'caller' ->> 'org' AS org,
         r -> 'caller' ->> 'sub' AS sub, r ->> 'dataset' AS dataset,
         r ->> 'destination' AS destination, r ->> 'decision' AS decision,
         r ->> 'rule' AS rule, u.l AS line
  FROM {b} b
  CROSS JOIN LATERAL unnest(b.lines) WITH ORDINALITY AS u(l, o)
  CROSS JOIN LATERAL (SELECT u.l::jsonb) AS j(r);
{pipl}
CREATE OR REPLACE FUNCTION {t}_append_only() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  RAISE EXCEPTION 'the bordergate audit table % is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$f$;
CREATE OR REPLACE TRIGGER {t}_no_change INSTEAD OF UPDATE OR DELETE ON {t}
  FOR EACH ROW EXECUTE FUNCTION {t}_append_only();
",
            lz4 = batches.replace("{compression}", "COMPRESSION lz4"),
            plain = batches.replace("{compression}", ""),
            pipl = extra_ddl,
        );
        for tab in self.tables(&extra) {
            sql.push_str(&format!(
                "CREATE OR REPLACE TRIGGER {tab}_no_change BEFORE UPDATE OR DELETE ON {tab}
  FOR EACH ROW EXECUTE FUNCTION {t}_append_only();
CREATE OR REPLACE TRIGGER {tab}_no_truncate BEFORE TRUNCATE ON {tab}
  FOR EACH STATEMENT EXECUTE FUNCTION {t}_append_only();
"
            ));
        }
        if let Some(role) = grant {
            let list: Vec<&str> = self.tables(&extra).collect();
            sql.push_str(&format!(
                "REVOKE ALL ON {all}, {t} FROM \"{role}\";
GRANT SELECT, INSERT ON {all} TO \"{role}\";
GRANT SELECT ON {t} TO \"{role}\";
DO $m$
BEGIN
  IF to_regclass('{t}_v2') IS NOT NULL THEN
    REVOKE ALL ON {t}_v2 FROM \"{role}\";
    GRANT SELECT ON {t}_v2 TO \"{role}\";
  END IF;
END
$m$;
",
                all = list.join(", ")
            ));
        }
        sql.push_str(&format!(
            "INSERT INTO {s} (version) VALUES ({VERSION}) ON CONFLICT DO NOTHING;"
        ));
        sql
    }

    /// True when the schema table exists.
    pub fn has_schema(&self) -> String {
        format!("SELECT to_regclass('{}') IS NOT NULL", self.schema)
    }

    /// The newest schema version applied (NULL: none).
    pub fn schema_version(&self) -> String {
        format!("SELECT max(version) FROM {}", self.schema)
    }

    /// A session lock on one chain: a second process with the same replica name is refused.
    pub fn lock_chain(&self) -> String {
        "SELECT pg_try_advisory_lock(hashtextextended('bordergate-chain:' || $1::text || ':' || $2::text, 0))".into()
    }

    /// The same lock, waited for (up to the session's `lock_timeout`): after a reconnect our
    /// own previous session may still be ending.
    pub fn wait_chain(&self) -> String {
        "SELECT pg_advisory_lock(hashtextextended('bordergate-chain:' || $1::text || ':' || $2::text, 0)) IS NOT NULL".into()
    }

    /// One statement for a whole batch: its row and the chain's new head. `$1` chain, `$2`
    /// first seq, `$3` last seq, `$4` the writer's clock (RFC 3339), `$5` the lines, `$6`
    /// the head's hash. It stores nothing (and answers 0 rows) unless the batch continues
    /// the chain's last batch: a chain cannot fork or overlap in the table.
    pub fn insert(&self) -> String {
        format!(
            "WITH b AS (
  INSERT INTO {b} (chain, first, last, committed, lines)
  SELECT $1::text, $2::int8, $3::int8, CAST($4::text AS timestamptz), $5::text[]
  WHERE COALESCE((SELECT last FROM {b} WHERE chain = $1::text ORDER BY first DESC LIMIT 1), 0) = $2::int8 - 1
  RETURNING last
)
INSERT INTO {h} (chain, seq, hash) SELECT $1::text, last, $6::text FROM b",
            b = self.batches,
            h = self.heads
        )
    }

    /// A chain's last [`TAIL_ROWS`] records (`seq`, `line`), newest first.
    pub fn tail(&self) -> String {
        format!(
            "SELECT b.first + u.o - 1 AS seq, u.l
FROM (SELECT first, lines FROM {} WHERE chain = $1::text ORDER BY first DESC LIMIT {TAIL_ROWS}) b
CROSS JOIN LATERAL unnest(b.lines) WITH ORDINALITY AS u(l, o)
ORDER BY seq DESC LIMIT {TAIL_ROWS}",
            self.batches
        )
    }

    /// A chain's newest recorded head.
    pub fn last_head(&self) -> String {
        format!(
            "SELECT seq, hash FROM {} WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
            self.heads
        )
    }

    /// The lines of the batches committed from `$1` (RFC 3339 text) on, in commit order:
    /// every record newer than `$1` and a few older ones (a batch is committed after its
    /// records were made); callers filter by the records' own times.
    pub fn lines_since(&self) -> String {
        format!(
            "SELECT u.l FROM {} b CROSS JOIN LATERAL unnest(b.lines) WITH ORDINALITY AS u(l, o)
WHERE b.committed >= CAST($1::text AS timestamptz) ORDER BY b.committed, b.chain, b.first, u.o",
            self.batches
        )
    }

    /// Every record (`chain`, `seq`, `line`), chain by chain in `seq` order, for `audit
    /// verify --postgres` and export.
    pub fn all(&self) -> String {
        format!(
            "SELECT b.chain::text, b.first + u.o - 1, u.l
FROM {} b CROSS JOIN LATERAL unnest(b.lines) WITH ORDINALITY AS u(l, o)
ORDER BY b.chain, b.first, u.o",
            self.batches
        )
    }

    /// Every recorded head, chain by chain.
    pub fn all_heads(&self) -> String {
        format!(
            "SELECT chain, seq, hash FROM {} ORDER BY chain, seq",
            self.heads
        )
    }
}

/// Tables other modules keep in the store (names, and their DDL), migrated and protected
/// with the audit tables.
fn other_tables(t: &str) -> (Vec<String>, String) {
    (
        vec![crate::pipl::pg::table_name(t)],
        crate::pipl::pg::ddl(t),
    )
}

/// Where a chain continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChainHead {
    /// Sequence number of the last record (0: none yet).
    pub seq: u64,
    pub hash: [u8; HASH_LEN],
}

impl ChainHead {
    pub const EMPTY: ChainHead = ChainHead {
        seq: 0,
        hash: GENESIS,
    };
}

pub(crate) fn decode_hash(s: &str) -> Option<[u8; HASH_LEN]> {
    let mut out = [0u8; HASH_LEN];
    hex::decode_to_slice(s, &mut out).ok()?;
    (hex::encode(out) == s).then_some(out)
}

pub(crate) fn head_from(seq: i64, hash: &str, table: &str) -> Result<ChainHead, String> {
    let seq = u64::try_from(seq).map_err(|_| format!("`{table}_heads` holds a negative seq"))?;
    let hash = decode_hash(hash).ok_or_else(|| {
        format!("`{table}_heads` holds a hash that is not 64 lower-case hex digits")
    })?;
    Ok(ChainHead { seq, hash })
}

/// Why the store cannot be used yet.
#[derive(Debug)]
pub(crate) enum Unready {
    /// The database did not answer (or refused us): retry later.
    Unavailable(String),
    /// The chain is damaged, or another process writes it: do not write.
    Corrupt(String),
}

/// Makes sure the schema is current (migrating when `migrate` allows it), then reads the
/// last [`TAIL_ROWS`] rows of `chain`, checks them against each other and against the
/// chain's recorded head, and returns the head and the lines read (oldest first).
pub(crate) async fn prepare(
    client: &mut Client,
    sql: &Sql,
    chain: &str,
    migrate: bool,
) -> Result<(ChainHead, Vec<String>), Unready> {
    let t = &sql.table;
    let un = |what: &str, e: tokio_postgres::Error| {
        Unready::Unavailable(format!("cannot {what} `{t}`: {}", pg_error(&e)))
    };
    let version = schema_version(client, sql)
        .await
        .map_err(|e| un("read the schema version of", e))?;
    if version.is_none_or(|v| v < VERSION) {
        let run = format!(
            "run `bordergate audit migrate --postgres … --table {t} --grant <gateway role>` as an admin role"
        );
        if !migrate {
            return Err(Unready::Corrupt(format!(
                "`{t}` is not set up (schema version {}; this gateway needs {VERSION}) and `audit.postgres.migrate` is false: {run}",
                version.map_or("none".to_owned(), |v| v.to_string())
            )));
        }
        migrate_with(client, sql, None).await.map_err(|e| {
            Unready::Corrupt(format!(
                "`{t}` is not set up and cannot be created: {e}; {run}"
            ))
        })?;
    } else if version.is_some_and(|v| v > VERSION) {
        return Err(Unready::Corrupt(format!(
            "`{t}` has schema version {} but this gateway knows {VERSION}: upgrade the gateway",
            version.unwrap_or_default()
        )));
    }
    // One snapshot for the head and the rows.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| un("read", e))?;
    let head = tx
        .query_opt(&sql.last_head(), &[&chain])
        .await
        .map_err(|e| un("read the heads of", e))?;
    let head = match head {
        Some(r) => head_from(r.get(0), r.get(1), t).map_err(Unready::Corrupt)?,
        None => ChainHead::EMPTY,
    };
    let rows = tx
        .query(&sql.tail(), &[&chain])
        .await
        .map_err(|e| un("read", e))?;
    let _ = tx.commit().await;
    let mut tail = Vec::with_capacity(rows.len());
    for r in rows.iter().rev() {
        let seq: i64 = r.get(0);
        let line: String = r.get(1);
        tail.push((seq, line));
    }
    let borrowed: Vec<(i64, &str)> = tail.iter().map(|(s, l)| (*s, l.as_str())).collect();
    let end =
        check_tail(&borrowed, head, &format!("{t}` chain `{chain}")).map_err(Unready::Corrupt)?;
    Ok((end, tail.into_iter().map(|(_, l)| l).collect()))
}

/// The store's schema version; `None` when it was never set up.
pub(crate) async fn schema_version(
    client: &Client,
    sql: &Sql,
) -> Result<Option<i32>, tokio_postgres::Error> {
    let exists: bool = client.query_one(&sql.has_schema(), &[]).await?.get(0);
    if !exists {
        return Ok(None);
    }
    client
        .query_one(&sql.schema_version(), &[])
        .await?
        .try_get(0)
}

/// Runs the migration in one transaction; the error names PostgreSQL's reason.
pub(crate) async fn migrate_with(
    client: &mut Client,
    sql: &Sql,
    grant: Option<&str>,
) -> Result<(), String> {
    let tx = client.transaction().await.map_err(|e| pg_error(&e))?;
    tx.batch_execute(&sql.migration(grant))
        .await
        .map_err(|e| pg_error(&e))?;
    tx.commit().await.map_err(|e| pg_error(&e))
}

/// Checks rows (oldest first) against each other and against the chain's recorded head,
/// with the verifier of `bordergate audit verify`: the rows are read as the lines of a log,
/// the first taken on trust (apart from its own hash) unless it is seq 1. Returns where the
/// chain ends (a crash between a batch and its head cannot happen: one statement writes
/// both).
pub(crate) fn check_tail(
    rows: &[(i64, &str)],
    head: ChainHead,
    t: &str,
) -> Result<ChainHead, String> {
    const RUN: &str = "run `bordergate audit verify --postgres …`";
    let mut text = Vec::with_capacity(rows.iter().map(|(_, l)| l.len() + 1).sum());
    for (_, line) in rows {
        text.extend_from_slice(line.as_bytes());
        text.push(b'\n');
    }
    let anchored = rows.first().is_some_and(|&(seq, _)| seq == 1);
    // Each row's `seq` column must be the seq of its line: the verifier sees only the lines.
    let mut next = 0usize;
    let mut mislabelled: Option<(i64, u64)> = None;
    let out = check_from(&text[..], Chain::new(anchored, 0), &mut |_, seq| {
        if let Some(&(column, _)) = rows.get(next)
            && u64::try_from(column).ok() != Some(seq)
        {
            mislabelled.get_or_insert((column, seq));
        }
        next += 1;
    });
    if let Some(f) = out.finding {
        let p = f.problem;
        let row = usize::try_from(p.line)
            .ok()
            .and_then(|l| rows.get(l.checked_sub(1)?));
        let seq = p.seq.or(row.and_then(|&(s, _)| u64::try_from(s).ok()));
        let at = seq.map(|s| format!(" seq {s}")).unwrap_or_default();
        let lines = if p.message.contains("line ") {
            format!("; line 1 is the oldest of the {} row(s) read", rows.len())
        } else {
            String::new()
        };
        return Err(format!(
            "`{t}`{at}: {}: {}{lines}; {RUN}",
            p.kind, p.message
        ));
    }
    if let Some((column, seq)) = mislabelled {
        return Err(format!(
            "`{t}` row seq {column} holds the record of seq {seq}; {RUN}"
        ));
    }
    match out.last {
        None if head.seq == 0 => Ok(ChainHead::EMPTY),
        None => Err(format!(
            "`{t}` has no rows but its recorded head is seq {}: records were deleted; {RUN}",
            head.seq
        )),
        Some((s, h)) if s == head.seq && h == head.hash => Ok(head),
        Some((s, _)) if s < head.seq => Err(format!(
            "`{t}` ends at seq {s} but its recorded head is seq {}: the newest records were deleted; {RUN}",
            head.seq
        )),
        Some((s, _)) => Err(format!(
            "`{t}` ends at seq {s} but its recorded head is seq {}: the table was changed outside the gateway; {RUN}",
            head.seq
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use crate::audit::line::encode_line;

    fn chain(n: u64) -> (Vec<String>, ChainHead) {
        let mut prev = GENESIS;
        let mut lines = Vec::new();
        for seq in 1..=n {
            let mut buf = Vec::new();
            prev = encode_line(&mut buf, seq, &prev, br#"{"kind":"event","event":"x"}"#);
            buf.pop();
            lines.push(String::from_utf8(buf).unwrap());
        }
        (lines, ChainHead { seq: n, hash: prev })
    }

    #[test]
    fn tail_check_accepts_a_chain_and_names_breaks() {
        let (lines, head) = chain(5);
        let rows: Vec<(i64, &str)> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| (i as i64 + 1, l.as_str()))
            .collect();
        assert_eq!(check_tail(&rows, head, "t").unwrap(), head);
        check_tail(&rows[2..], head, "t").unwrap();
        check_tail(&[], ChainHead::EMPTY, "t").unwrap();
        let e = check_tail(&rows[..4], head, "t").unwrap_err();
        assert!(
            e.contains("ends at seq 4") && e.contains("seq 5") && e.contains("deleted"),
            "{e}"
        );
        let gap = [rows[0], rows[2]];
        let e = check_tail(
            &gap,
            ChainHead {
                seq: 3,
                hash: head.hash,
            },
            "t",
        )
        .unwrap_err();
        assert!(
            e.contains("missing") && e.contains("seq 2 is missing"),
            "{e}"
        );
        let edited = lines[1].replace("\"x\"", "\"y\"");
        let bad = [rows[0], (2, edited.as_str())];
        let e = check_tail(&bad, head, "t").unwrap_err();
        assert!(
            e.contains("modified")
                && e.contains("seq 2")
                && e.contains("no longer matches its hash"),
            "{e}"
        );
        let e = check_tail(&[], head, "t").unwrap_err();
        assert!(e.contains("no rows"), "{e}");
        // Links are checked from the first row on, and seq 1 must start the chain.
        let line = |seq: u64, prev: &[u8; HASH_LEN], event: &str| {
            let mut buf = Vec::new();
            let json = format!(r#"{{"kind":"event","event":"{event}"}}"#);
            encode_line(&mut buf, seq, prev, json.as_bytes());
            buf.pop();
            String::from_utf8(buf).unwrap()
        };
        let other = line(1, &GENESIS, "other");
        let e = check_tail(&[(1, &other), rows[1]], head, "t").unwrap_err();
        assert!(e.contains("seq 2") && e.contains("does not link"), "{e}");
        let stray = line(1, &[7; HASH_LEN], "x");
        let e = check_tail(&[(1, &stray)], head, "t").unwrap_err();
        assert!(e.contains("seq 1") && e.contains("genesis"), "{e}");
        // The `seq` column must be the line's.
        let e = check_tail(&[(7, rows[2].1), rows[3], rows[4]], head, "t").unwrap_err();
        assert!(e.contains("row seq 7 holds the record of seq 3"), "{e}");
        let e = check_tail(&[(1, "garbage")], head, "t").unwrap_err();
        assert!(e.contains("seq 1") && e.contains("malformed"), "{e}");
    }

    #[test]
    fn table_names_are_checked_before_they_reach_sql() {
        assert!(Sql::new("bordergate_audit").is_ok());
        assert!(Sql::new("x; DROP TABLE y").is_err());
        assert!(Sql::new("Audit").is_err());
        assert!(Sql::new("").is_err());
        let s = Sql::new("a1").unwrap();
        assert!(s.insert().contains("INSERT INTO a1_heads"));
        assert!(s.insert().contains("INSERT INTO a1_batches"));
        let m = s.migration(Some("gw"));
        assert!(
            m.contains("GRANT SELECT, INSERT ON a1_batches, a1_heads, a1_schema"),
            "{m}"
        );
        assert!(m.contains("GRANT SELECT ON a1 TO"), "{m}");
        assert!(m.contains("BEFORE UPDATE OR DELETE ON a1_heads"), "{m}");
        assert!(!m.contains("GRANT UPDATE"));
    }

    #[test]
    fn hashes_have_one_spelling() {
        let h = hex::encode([0xab; 32]);
        assert_eq!(decode_hash(&h), Some([0xab; 32]));
        assert_eq!(decode_hash(&h.to_uppercase()), None);
        assert_eq!(decode_hash("ab"), None);
    }
}
