//! Tests of the log as the gateway uses it: concurrent appends, restarts, repairs, faults.
#![allow(clippy::unwrap_used)] // Tests may unwrap.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::*;

fn event(detail: &str) -> Record {
    Record::Event(EventRecord::new("test", detail.to_owned()))
}

fn completion(n: u64) -> Record {
    Record::Completion(CompletionRecord {
        time: record::now_rfc3339(),
        request_id: format!("req-{n}"),
        decision_seq: n,
        status: 200,
        bytes_in: 0,
        bytes_out: n * 10,
        duration_ms: 1,
        outcome: Outcome::Complete,
        detail: None,
        recheck: None,
        sent_sha256: None,
    })
}

fn lines(path: &Path) -> Vec<ParsedLine> {
    fs::read(path)
        .unwrap()
        .split_inclusive(|&b| b == b'\n')
        .map(|l| parse_line(l).unwrap())
        .collect()
}

fn events(path: &Path, name: &str) -> Vec<(u64, String)> {
    lines(path)
        .into_iter()
        .filter(|l| l.kind == "event" && l.value["event"] == name)
        .map(|l| (l.seq, l.value["detail"].as_str().unwrap().to_owned()))
        .collect()
}

#[track_caller]
fn assert_verifies(path: &Path) -> VerifyReport {
    let r = verify_file(path);
    assert!(r.is_ok(), "{r}");
    r
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_get_contiguous_seqs() {
    let (_dir, path) = tmp();
    let log = AuditLog::open(&path, 64).unwrap();
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..50 {
                out.push(log.append(completion(t * 1000 + i)).await.unwrap());
            }
            out
        }));
    }
    let mut receipts = Vec::new();
    for t in tasks {
        receipts.extend(t.await.unwrap());
    }
    log.shutdown().await;
    receipts.sort_by_key(|r| r.seq);
    let seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    // seq 1 is the start event.
    assert_eq!(seqs, (2..=1601).collect::<Vec<_>>());
    let r = assert_verifies(&path);
    assert_eq!(r.records, 1602); // start, 1600 appends, shutdown
    let parsed = lines(&path);
    for rc in &receipts {
        assert_eq!(parsed[(rc.seq - 1) as usize].hash, rc.hash);
    }
    assert_eq!(parsed[0].value["event"], "start");
    assert_eq!(parsed[0].value["detail"], "new log");
    assert_eq!(parsed[1601].value["event"], "shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nowait_records_are_written_fast_and_flushed_by_shutdown() {
    let (_dir, path) = tmp();
    let log = AuditLog::open(&path, 256).unwrap();
    let n = 20_000u64;
    let t = Instant::now();
    for i in 0..n {
        log.append_nowait(completion(i));
    }
    log.shutdown().await;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    eprintln!(
        "{n} records in {:?} ({rate:.0}/s, debug build)",
        t.elapsed()
    );
    let r = assert_verifies(&path);
    assert_eq!(r.records, n + 2);
    assert!(!log.healthy());
    assert_eq!(log.status(), AuditStatus::Stopped);
    assert!(matches!(
        log.append(event("late")).await,
        Err(AuditError::Unavailable(_))
    ));
    log.append_nowait(event("late")); // dropped, reported, no panic
    log.shutdown().await; // twice is fine
    assert_eq!(verify_file(&path).records, n + 2);
}

#[tokio::test]
async fn reopening_continues_the_chain() {
    let (_dir, path) = tmp();
    let log = AuditLog::open(&path, 8).unwrap();
    log.append(event("one")).await.unwrap();
    log.shutdown().await;
    let log = AuditLog::open(&path, 8).unwrap();
    let rc = log.append(event("two")).await.unwrap();
    log.shutdown().await;
    // start, one, shutdown, start, two, shutdown
    assert_eq!(rc.seq, 5);
    assert_eq!(assert_verifies(&path).records, 6);
    let starts = events(&path, "start");
    assert_eq!(
        starts,
        vec![
            (1, "new log".to_owned()),
            (4, "chain continues at seq 4".to_owned())
        ]
    );
}

#[tokio::test]
async fn open_creates_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/audit.jsonl");
    let log = AuditLog::open(&path, 8).unwrap();
    log.append(event("x")).await.unwrap();
    log.shutdown().await;
    assert_eq!(assert_verifies(&path).records, 3);
}

#[test]
fn open_fails_on_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let err = AuditLog::open(dir.path(), 8).unwrap_err();
    assert!(matches!(err, AuditError::Unavailable(_)), "{err}");
}

/// A log of a few records whose last line is the shutdown event.
async fn small_log(path: &Path) -> Vec<u8> {
    let log = AuditLog::open(path, 8).unwrap();
    log.append(event("a")).await.unwrap();
    log.append(completion(2)).await.unwrap();
    log.shutdown().await;
    fs::read(path).unwrap()
}

#[tokio::test]
async fn a_torn_tail_at_every_offset_is_repaired() {
    let (_dir, path) = tmp();
    let good = small_log(&path).await;
    let last_start = good[..good.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let kept = verify_file(&path).records - 1; // records before the torn one
    for cut in last_start + 1..good.len() {
        fs::write(&path, &good[..cut]).unwrap();
        // A record torn by a crash was never durable, so the head file never named it.
        let _ = fs::remove_file(super::head::path_for(&path));
        let log = AuditLog::open(&path, 8).unwrap();
        let rc = log.append(event("after repair")).await.unwrap();
        log.shutdown().await;
        let r = verify_file(&path);
        assert!(r.is_ok(), "cut at {cut}: {r}");
        // repair, start, the append, shutdown
        assert_eq!(r.records, kept + 4, "cut at {cut}");
        assert_eq!(rc.seq, kept + 3);
        let repairs = events(&path, "repair");
        assert_eq!(
            repairs,
            vec![(
                kept + 1,
                format!(
                    "cut {} bytes of a torn record at byte offset {last_start}",
                    cut - last_start
                )
            )],
            "cut at {cut}"
        );
        assert_eq!(
            events(&path, "start").last().unwrap(),
            &(kept + 2, format!("chain continues at seq {}", kept + 1))
        );
        // The surviving records are untouched.
        assert_eq!(fs::read(&path).unwrap()[..last_start], good[..last_start]);
    }
}

#[tokio::test]
async fn a_torn_first_record_starts_a_new_log() {
    let (_dir, path) = tmp();
    let good = small_log(&path).await;
    fs::write(&path, &good[..40]).unwrap();
    fs::remove_file(super::head::path_for(&path)).unwrap();
    let log = AuditLog::open(&path, 8).unwrap();
    log.shutdown().await;
    assert_eq!(assert_verifies(&path).records, 3);
    assert_eq!(
        events(&path, "repair"),
        vec![(
            1,
            "cut 40 bytes of a torn record at byte offset 0".to_owned()
        )]
    );
    assert_eq!(events(&path, "start"), vec![(2, "new log".to_owned())]);
}

#[tokio::test]
async fn interior_corruption_refuses_to_open() {
    let (_dir, path) = tmp();
    let good = small_log(&path).await;
    let text = String::from_utf8(good.clone()).unwrap();
    fs::write(
        &path,
        text.replacen(r#""detail":"a""#, r#""detail":"b""#, 1),
    )
    .unwrap();
    match AuditLog::open(&path, 8) {
        Err(AuditError::Corrupt(msg)) => {
            assert!(msg.contains("(seq 2): modified:"), "{msg}");
            assert!(msg.contains("audit verify"), "{msg}");
        }
        other => panic!("expected corrupt, got {other:?}"),
    }
    // The file is left as it was.
    assert_ne!(fs::read(&path).unwrap(), good);

    // A complete last line that fails its hash is damage too, not a torn write.
    let n = good.len();
    let mut bad = good.clone();
    bad[n - 10] = if bad[n - 10] == b'a' { b'b' } else { b'a' };
    fs::write(&path, &bad).unwrap();
    assert!(matches!(
        AuditLog::open(&path, 8),
        Err(AuditError::Corrupt(_))
    ));

    // A deleted record.
    let mut ls: Vec<&[u8]> = good.split_inclusive(|&b| b == b'\n').collect();
    ls.remove(1);
    fs::write(&path, ls.concat()).unwrap();
    match AuditLog::open(&path, 8) {
        Err(AuditError::Corrupt(msg)) => assert!(msg.contains("missing"), "{msg}"),
        other => panic!("expected corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn the_tail_check_only_reads_the_last_mib() {
    let (_dir, path) = tmp();
    let log = AuditLog::open(&path, 512).unwrap();
    for i in 0..8000 {
        log.append_nowait(completion(i));
    }
    log.shutdown().await;
    let size = fs::metadata(&path).unwrap().len();
    assert!(size > 2 * tail::WINDOW, "{size}");
    // Damage near the start is outside the window: open succeeds (verify still finds it).
    let mut bytes = fs::read(&path).unwrap();
    bytes[300] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let log = AuditLog::open(&path, 8).unwrap();
    let rc = log.append(event("x")).await.unwrap();
    log.shutdown().await;
    assert_eq!(rc.seq, 8002 + 2);
    assert!(!verify_file(&path).is_ok());
    // Damage near the end refuses to open.
    let mut bytes = fs::read(&path).unwrap();
    bytes[300] ^= 1;
    let n = bytes.len();
    bytes[n - 500] ^= 1;
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        AuditLog::open(&path, 8),
        Err(AuditError::Corrupt(_))
    ));
}

#[tokio::test]
async fn a_full_disk_fails_appends_but_keeps_the_log_usable() {
    let log = AuditLog::open(Path::new("/dev/full"), 8).unwrap();
    match log.append(event("x")).await {
        Err(AuditError::Unavailable(msg)) => assert!(msg.contains("/dev/full"), "{msg}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(log.healthy());
    assert_eq!(log.status(), AuditStatus::WriteFailing);
    log.shutdown().await;
    assert!(!log.healthy());
}

/// Failures to inject into the writer's file.
#[derive(Clone, Default)]
struct Faults {
    /// Write half the batch, then fail with ENOSPC.
    write: Arc<AtomicBool>,
    /// fdatasync fails with EIO.
    sync: Arc<AtomicBool>,
    /// set_len fails with EIO.
    set_len: Arc<AtomicBool>,
}

struct FaultyFile {
    file: File,
    faults: Faults,
}

impl LogFile for FaultyFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.faults.write.load(Ordering::SeqCst) {
            io::Write::write_all(&mut self.file, &buf[..buf.len() / 2])?;
            return Err(io::Error::from_raw_os_error(28));
        }
        io::Write::write_all(&mut self.file, buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        if self.faults.sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.file.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        if self.faults.set_len.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.file.set_len(len)
    }
    fn len(&mut self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

fn faulty(path: &Path) -> (AuditLog, Faults) {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    let faults = Faults::default();
    let f = FaultyFile {
        file,
        faults: faults.clone(),
    };
    let log = AuditLog::start(
        f,
        true,
        Resume::fresh(0),
        8,
        "test log".into(),
        Default::default(),
        Vec::new(),
        &Stamp::default(),
    )
    .unwrap();
    (log, faults)
}

#[tokio::test]
async fn a_failed_write_is_rolled_back_without_a_gap() {
    let (_dir, path) = tmp();
    let (log, faults) = faulty(&path);
    assert_eq!(log.append(event("a")).await.unwrap().seq, 2);
    let len = fs::metadata(&path).unwrap().len();
    faults.write.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert!(matches!(
            log.append(event("b")).await,
            Err(AuditError::Unavailable(_))
        ));
        // The half-written batch is gone.
        assert_eq!(fs::metadata(&path).unwrap().len(), len);
    }
    assert!(log.healthy());
    assert_eq!(log.status(), AuditStatus::WriteFailing);
    faults.write.store(false, Ordering::SeqCst);
    assert_eq!(log.append(event("c")).await.unwrap().seq, 3);
    assert_eq!(log.status(), AuditStatus::Ok);
    log.shutdown().await;
    assert_eq!(assert_verifies(&path).records, 4);
}

#[tokio::test]
async fn a_write_that_cannot_be_rolled_back_poisons() {
    let (_dir, path) = tmp();
    let (log, faults) = faulty(&path);
    log.append(event("a")).await.unwrap();
    faults.write.store(true, Ordering::SeqCst);
    faults.set_len.store(true, Ordering::SeqCst);
    assert!(log.append(event("b")).await.is_err());
    assert!(!log.healthy());
    assert_eq!(log.status(), AuditStatus::Poisoned);
    faults.write.store(false, Ordering::SeqCst);
    faults.set_len.store(false, Ordering::SeqCst);
    assert!(log.append(event("c")).await.is_err());
}

#[tokio::test]
async fn a_failed_fsync_poisons_for_good() {
    let (_dir, path) = tmp();
    let (log, faults) = faulty(&path);
    log.append(event("a")).await.unwrap();
    faults.sync.store(true, Ordering::SeqCst);
    match log.append(event("b")).await {
        Err(AuditError::Unavailable(msg)) => assert!(msg.contains("fdatasync"), "{msg}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(!log.healthy());
    assert_eq!(log.status(), AuditStatus::Poisoned);
    // Never retried, even once fsync would work again.
    faults.sync.store(false, Ordering::SeqCst);
    assert!(log.append(event("c")).await.is_err());
    log.append_nowait(event("d"));
    log.shutdown().await;
    // What reached the file still chains; nothing after the failure was added.
    let r = assert_verifies(&path);
    assert_eq!(r.records, 3); // start, a, b (written, never acknowledged)
}

#[tokio::test]
async fn a_decision_record_reads_back() {
    use crate::model::{Caller, Category, Country, Direction, Effect, Tags};
    let de = Country::parse("DE").unwrap();
    let us = Country::parse("US").unwrap();
    let mut tags = Tags::default();
    tags.origins.insert(de);
    tags.categories.insert(Category::Health);
    let rec = Record::Decision(Box::new(DecisionRecord {
        time: record::now_rfc3339(),
        request_id: "req-1".into(),
        caller: Some(Caller {
            sub: "alice".into(),
            org: "acme".into(),
            jurisdiction: us,
            purpose: "training".into(),
            claimed_jurisdiction: None,
        }),
        method: "GET".into(),
        path: "/datasets/ehr/\"quoted\"\nnewline".into(),
        dataset: Some("ehr".into()),
        tags: Some(tags),
        origins: vec![de],
        destination: Some(us),
        direction: Direction::Download,
        decision: Effect::Deny,
        enforced: true,
        status: 451,
        rule: "gdpr-ch5".into(),
        article: "GDPR Art. 44".into(),
        reason: "no adequacy decision".into(),
        policy_version: "v1".into(),
        upstream: None,
        exporter: None,
        client_request_id: None,
        undeclared_recent: None,
        credential: None,
        instrument: None,
        transform: None,
    }));
    let (_dir, path) = tmp();
    let log = AuditLog::open(&path, 8).unwrap();
    let rc = log.append(rec).await.unwrap();
    log.shutdown().await;
    assert_verifies(&path);
    let l = &lines(&path)[(rc.seq - 1) as usize];
    assert_eq!(l.kind, "decision");
    assert_eq!(l.hash, rc.hash);
    assert_eq!(l.value["caller"]["jurisdiction"], "US");
    assert_eq!(l.value["path"], "/datasets/ehr/\"quoted\"\nnewline");
    assert_eq!(l.value["status"], 451);
}

#[tokio::test]
async fn a_log_cut_or_emptied_between_runs_is_refused_and_named_by_verify() {
    let (_dir, path) = tmp();
    let good = small_log(&path).await;
    let last_start = good[..good.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    // The last durable record cut away: the head file still names it.
    fs::write(&path, &good[..last_start]).unwrap();
    let r = super::verify::verify_log(std::slice::from_ref(&path), &Default::default());
    assert!(
        r.damage
            .iter()
            .any(|d| d.kind == ProblemKind::Truncated && d.message.contains("records were removed")),
        "{r}"
    );
    match AuditLog::open(&path, 8) {
        Err(AuditError::Corrupt(m)) => assert!(m.contains("records were removed"), "{m}"),
        other => panic!("a cut log was continued: {other:?}"),
    }
    // Emptied, or deleted: the same.
    fs::write(&path, b"").unwrap();
    assert!(matches!(
        AuditLog::open(&path, 8),
        Err(AuditError::Corrupt(_))
    ));
    fs::remove_file(&path).unwrap();
    assert!(matches!(
        AuditLog::open(&path, 8),
        Err(AuditError::Corrupt(_))
    ));
    // Restored, it continues.
    fs::write(&path, &good).unwrap();
    let log = AuditLog::open(&path, 8).unwrap();
    log.shutdown().await;
    assert!(verify_file(&path).is_ok());
}

#[test]
fn a_symlinked_or_world_writable_log_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, path) = tmp();
    fs::write(&path, b"").unwrap();
    let link = dir.path().join("link.log");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let e = AuditLog::open(&link, 8).unwrap_err().to_string();
    assert!(e.contains("symbolic link"), "{e}");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    let e = AuditLog::open(&path, 8).unwrap_err().to_string();
    assert!(e.contains("writable by everyone"), "{e}");
    let open = dir.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let e = AuditLog::open(&open.join("a.log"), 8)
        .unwrap_err()
        .to_string();
    assert!(e.contains("writable by everyone"), "{e}");
}

#[tokio::test]
async fn a_stamped_log_names_its_replica_in_every_record_and_still_verifies() {
    let (_dir, path) = tmp();
    // An old log without the field, continued by a stamped gateway.
    let log = AuditLog::open(&path, 8).unwrap();
    log.append(event("old")).await.unwrap();
    log.shutdown().await;
    let stamp = Stamp {
        replica: Some(crate::config::Replica {
            name: "gw-1".into(),
            region: Some("eu-central".into()),
        }),
        policy_version: Some("sha256:aa".into()),
    };
    let log = AuditLog::open_file(&path, Options::default(), &stamp).unwrap();
    assert_eq!(log.replica().map(|r| &*r.name), Some("gw-1"));
    log.append(event("new")).await.unwrap();
    log.append(completion(1)).await.unwrap();
    log.shutdown().await;
    assert_verifies(&path);
    let all = lines(&path);
    let (old, new) = all.split_at(3);
    assert!(old.iter().all(|l| l.value.get("replica").is_none()));
    assert_eq!(new.len(), 4, "start, event, completion, shutdown");
    for l in new {
        assert_eq!(l.value["replica"], "gw-1", "{:?}", l.value);
        assert_eq!(l.value["region"], "eu-central");
    }
    assert_eq!(new[0].value["event"], "start");
    assert_eq!(new[0].value["policy_version"], "sha256:aa");
    assert_eq!(new[3].value["event"], "shutdown");
    assert_eq!(new[3].value["policy_version"], "sha256:aa");
}
