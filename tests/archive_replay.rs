//! Replays: archiving the same offsets again rewrites the same files, byte for byte, and a
//! replay after a crash (the last file written but not committed) adds no duplicate rows even
//! when its roll boundaries differ from the first run's.

mod archive_support;
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use archive_support::files;
use common::archive::{readback, row_keys};
use common::predictions::{encode, prediction, T0_MS};
use emogate::archive::{
    Archiver, CommitRequest, LocalFsSink, NoMetrics, ParquetSettings, RollPolicy, RollReason,
};
use serde_json::Value;

fn archiver(root: &Path, max_rows: usize) -> Archiver {
    Archiver::new(
        RollPolicy { max_rows, max_age: Duration::from_secs(600) },
        ParquetSettings::default(),
        Arc::new(LocalFsSink::new(root)),
        Arc::new(NoMetrics),
    )
}

/// Feeds offsets `range` of two partitions (record i processed at T0 + 90 s × i, so an hour
/// boundary is crossed) and returns the commits.
fn feed(a: &mut Archiver, range: std::ops::Range<i64>) -> Vec<CommitRequest> {
    let now = Instant::now();
    let mut commits = Vec::new();
    for offset in range {
        for partition in 0..2 {
            let p = prediction(offset as u64 * 10 + partition as u64, T0_MS + offset * 90_000);
            commits.extend(a.record("emotion.accepted", partition, offset, Some(&encode(&p)), now).unwrap());
        }
    }
    commits
}

#[test]
fn archiving_the_same_offsets_twice_gives_byte_identical_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, second) = (tmp.path().join("first"), tmp.path().join("second"));
    for root in [&first, &second] {
        let mut a = archiver(root, 25);
        feed(&mut a, 0..60);
        a.flush_all(RollReason::Shutdown).unwrap();
    }
    let (one, two) = (files(&first), files(&second));
    assert!(one.len() >= 6, "expected several files, got {:?}", one.keys());
    assert_eq!(one, two, "same offsets, different files");

    // Replaying into the same root overwrites the same names: nothing is added.
    let mut again = archiver(&first, 25);
    feed(&mut again, 0..60);
    again.flush_all(RollReason::Shutdown).unwrap();
    assert_eq!(files(&first), one);

    let out = readback(&first);
    let keys = row_keys(&out, "duckdb");
    assert_eq!(keys.len(), 120);
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 120, "duplicate rows");
}

#[test]
fn a_crash_before_the_last_commit_is_replayed_without_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archive");

    // First run: offsets 0..33 with files of 10 rows; then an age roll writes the partial
    // buffer (30..32) and the process dies before committing it.
    let mut a = archiver(&root, 10);
    let committed = feed(&mut a, 0..33);
    let last_committed: Vec<i64> =
        committed.iter().filter(|c| c.partition == 0).map(|c| c.next_offset).collect();
    let age_roll = a.tick(Instant::now() + Duration::from_secs(3_600)).unwrap();
    assert!(!age_roll.is_empty(), "the age roll writes the partial files");
    drop(a); // crash: `age_roll` is never committed
    let resume = *last_committed.last().unwrap();
    let before: BTreeSet<String> = files(&root).into_keys().collect();

    // The replay starts at the last committed offset and sees more records, so its first
    // file is bigger than the one the crash left; it takes the same name and replaces it.
    let mut replay = archiver(&root, 10);
    feed(&mut replay, resume..57);
    replay.flush_all(RollReason::Shutdown).unwrap();
    let after: BTreeSet<String> = files(&root).into_keys().collect();
    assert!(
        before.is_subset(&after),
        "a replayed file changed name: {:?}",
        before.difference(&after).collect::<Vec<_>>()
    );

    let out = readback(&root);
    let keys = row_keys(&out, "duckdb");
    let unique: BTreeSet<_> = keys.iter().cloned().collect();
    assert_eq!(unique.len(), keys.len(), "duplicate rows after replay");
    assert_eq!(keys.len(), 2 * 57, "every offset archived once");
    assert_eq!(out["other_files"], Value::Array(vec![]));
}
