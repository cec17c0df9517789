//! The PostgreSQL schema of the audit store: table names, idempotent migrations, the
//! statements the writer prepares, and the start-up tail check.

use tokio_postgres::Client;

use crate::audit::line::{GENESIS, HASH_LEN, read_head};

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

    /// Creates both tables and their indexes if missing; safe to run from many gateways at once.
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
INSERT INTO {h} (id, seq, hash) VALUES (TRUE, 0, '{genesis}') ON CONFLICT (id) DO NOTHING;"
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

/// Checks rows (oldest first) against each other and against the chain head.
pub(crate) fn check_tail(rows: &[(i64, &str)], head: ChainHead, t: &str) -> Result<(), String> {
    let mut last: Option<(u64, [u8; HASH_LEN])> = None;
    for &(seq, line) in rows {
        let h = read_head(line.as_bytes()).map_err(|e| format!("`{t}` seq {seq}: {e}"))?;
        if !h.hash_ok || u64::try_from(seq).ok() != Some(h.seq) {
            return Err(format!(
                "`{t}` seq {seq} does not match its hash; run `bordergate audit verify --postgres …`"
            ));
        }
        if let Some((ls, lh)) = last
            && (h.seq != ls + 1 || h.prev != lh)
        {
            return Err(format!(
                "`{t}` seq {} does not follow seq {ls}; run `bordergate audit verify --postgres …`",
                h.seq
            ));
        }
        if last.is_none() && h.seq == 1 && h.prev != GENESIS {
            return Err(format!("`{t}` seq 1 does not start the chain"));
        }
        last = Some((h.seq, h.hash));
    }
    match last {
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
        assert!(e.contains("seq 3 does not follow seq 1"), "{e}");
        let edited = lines[1].replace("\"x\"", "\"y\"");
        let bad = [rows[0], (2, edited.as_str())];
        let e = check_tail(&bad, head, "t").unwrap_err();
        assert!(e.contains("seq 2 does not match its hash"), "{e}");
        let e = check_tail(&[], head, "t").unwrap_err();
        assert!(e.contains("empty"), "{e}");
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
