//! The PostgreSQL schema of the audit store: table names, idempotent migrations, the
//! statements the writer prepares, and the start-up tail check.

use tokio_postgres::Client;

use crate::audit::line::{GENESIS, HASH_LEN};
use crate::audit::verify::{Chain, check_from};

/// How many of the last rows the start-up check reads.
pub(crate) const TAIL_ROWS: i64 = 1000;

/// The SQL of one table pair: `<table>` (records) and `<table>_head` (the chain head).
#[derive(Clone, Debug)]
pub(crate) struct Sql {
    pub table: String,
    pub head: String,
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
            head: format!("{table}_head"),
        })
    }

    /// Creates both tables and their indexes if missing, and the PIPL ledger
    /// ([`crate::pipl::pg::ddl`]); safe to run from many gateways at once.
    pub fn migration(&self) -> String {
        let (t, h) = (&self.table, &self.head);
        let genesis = hex::encode(GENESIS);
        format!(
            "SELECT pg_advisory_xact_lock(hashtext('bordergate-audit:{t}'));
CREATE TABLE IF NOT EXISTS {t} (
  seq BIGINT PRIMARY KEY,
  prev TEXT NOT NULL,
  hash TEXT NOT NULL,
  kind TEXT NOT NULL,
  time TIMESTAMPTZ,
  request_id TEXT,
  org TEXT,
  sub TEXT,
  dataset TEXT,
  destination TEXT,
  decision TEXT,
  rule TEXT,
  line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS {t}_time ON {t} (time);
CREATE INDEX IF NOT EXISTS {t}_request_id ON {t} (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS {t}_org_time ON {t} (org, time) WHERE org IS NOT NULL;
CREATE INDEX IF NOT EXISTS {t}_decision_time ON {t} (decision, time) WHERE decision IS NOT NULL;
CREATE TABLE IF NOT EXISTS {h} (
  id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
  seq BIGINT NOT NULL,
  hash TEXT NOT NULL
);
INSERT INTO {h} (id, seq, hash) VALUES (TRUE, 0, '{genesis}') ON CONFLICT (id) DO NOTHING;
{pipl}",
            pipl = crate::pipl::pg::ddl(t)
        )
    }

    /// Locks the chain head for the rest of the transaction: batches of all gateways serialise here.
    pub fn lock_head(&self) -> String {
        format!("SELECT seq, hash FROM {} WHERE id FOR UPDATE", self.head)
    }

    pub fn read_head(&self) -> String {
        format!("SELECT seq, hash FROM {} WHERE id", self.head)
    }

    pub fn update_head(&self) -> String {
        format!("UPDATE {} SET seq = $1, hash = $2 WHERE id", self.head)
    }

    /// One statement for a whole batch: parallel arrays, one element per record.
    pub fn insert(&self) -> String {
        format!(
            "INSERT INTO {} (seq, prev, hash, kind, time, request_id, org, sub, dataset, destination, decision, rule, line)
SELECT s, p, h, k, tm::timestamptz, r, o, su, ds, de, d, ru, l
FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
  AS u(s, p, h, k, tm, r, o, su, ds, de, d, ru, l)",
            self.table
        )
    }

    pub fn tail(&self) -> String {
        format!(
            "SELECT seq, line FROM {} ORDER BY seq DESC LIMIT {TAIL_ROWS}",
            self.table
        )
    }

    /// Every row in chain order, for `audit verify --postgres` and `audit export`.
    /// The lines of decisions and completions from `$1` (RFC 3339 text) on, in `seq` order
    /// (the time index bounds the scan).
    pub fn decisions_since(&self) -> String {
        format!(
            "SELECT line FROM {} WHERE time >= CAST($1::text AS timestamptz) AND kind IN ('decision', 'completion') ORDER BY seq",
            self.table
        )
    }

    pub fn all(&self) -> String {
        format!(
            "SELECT seq, prev, hash, line FROM {} ORDER BY seq",
            self.table
        )
    }
}

/// Where the chain continues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChainHead {
    /// Sequence number of the last record (0: none yet).
    pub seq: u64,
    pub hash: [u8; HASH_LEN],
}

pub(crate) fn decode_hash(s: &str) -> Option<[u8; HASH_LEN]> {
    let mut out = [0u8; HASH_LEN];
    hex::decode_to_slice(s, &mut out).ok()?;
    (hex::encode(out) == s).then_some(out)
}

pub(crate) fn head_from(seq: i64, hash: &str, table: &str) -> Result<ChainHead, String> {
    let seq = u64::try_from(seq).map_err(|_| format!("`{table}_head` holds a negative seq"))?;
    let hash = decode_hash(hash).ok_or_else(|| {
        format!("`{table}_head` holds a hash that is not 64 lower-case hex digits")
    })?;
    Ok(ChainHead { seq, hash })
}

/// Runs the migrations, then checks that the last [`TAIL_ROWS`] rows chain correctly and end
/// at the chain head. Returns the head.
pub(crate) async fn prepare(client: &mut Client, sql: &Sql) -> Result<ChainHead, String> {
    let t = &sql.table;
    let tx = client
        .transaction()
        .await
        .map_err(|e| format!("cannot migrate `{t}`: {e}"))?;
    tx.batch_execute(&sql.migration())
        .await
        .map_err(|e| format!("cannot create `{t}`: {e}"))?;
    tx.commit()
        .await
        .map_err(|e| format!("cannot create `{t}`: {e}"))?;
    // One snapshot for the head and the rows, so a concurrent gateway's batch cannot split them.
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| format!("cannot read `{t}`: {e}"))?;
    let row = tx
        .query_one(&sql.read_head(), &[])
        .await
        .map_err(|e| format!("cannot read `{}`: {e}", sql.head))?;
    let head = head_from(row.get(0), row.get(1), t)?;
    let rows = tx
        .query(&sql.tail(), &[])
        .await
        .map_err(|e| format!("cannot read `{t}`: {e}"))?;
    let _ = tx.commit().await;
    let mut tail = Vec::with_capacity(rows.len());
    for r in rows.iter().rev() {
        let seq: i64 = r.get(0);
        let line: &str = r.get(1);
        tail.push((seq, line));
    }
    check_tail(&tail, head, t)?;
    Ok(head)
}

/// Checks rows (oldest first) against each other and against the chain head, with the
/// verifier of `bordergate audit verify`: the rows are read as the lines of a log, the first
/// taken on trust (apart from its own hash) unless it is seq 1.
pub(crate) fn check_tail(rows: &[(i64, &str)], head: ChainHead, t: &str) -> Result<(), String> {
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
        None if head.seq == 0 => Ok(()),
        None => Err(format!(
            "`{t}` is empty but its chain head says seq {}: records were deleted",
            head.seq
        )),
        Some((s, h)) if s == head.seq && h == head.hash => Ok(()),
        Some((s, _)) => Err(format!(
            "`{t}` ends at seq {s} but its chain head says seq {}: the table was changed outside the gateway",
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
        check_tail(&rows, head, "t").unwrap();
        check_tail(&rows[2..], head, "t").unwrap();
        check_tail(
            &[],
            ChainHead {
                seq: 0,
                hash: GENESIS,
            },
            "t",
        )
        .unwrap();
        let e = check_tail(&rows[..4], head, "t").unwrap_err();
        assert!(e.contains("ends at seq 4") && e.contains("seq 5"), "{e}");
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
        assert!(e.contains("empty"), "{e}");
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
        assert!(s.lock_head().contains("a1_head") && s.lock_head().ends_with("FOR UPDATE"));
    }

    #[test]
    fn hashes_have_one_spelling() {
        let h = hex::encode([0xab; 32]);
        assert_eq!(decode_hash(&h), Some([0xab; 32]));
        assert_eq!(decode_hash(&h.to_uppercase()), None);
        assert_eq!(decode_hash("ab"), None);
    }
}
