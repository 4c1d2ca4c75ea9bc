//! Offset bookkeeping, without Kafka: which offsets may be committed, and where to seek back
//! to when in-flight work is thrown away.
//!
//! The rule is "commit only what is done": a batch is *dispatched* by the source when it
//! closes and *completed* by the sink once all its outputs (predictions and dead letters) are
//! acknowledged (at-least-once) or its transaction committed (exactly-once). Batches complete
//! in dispatch order (the sink is sequential), so the commit position of a partition after a
//! batch is that batch's last offset + 1 — never beyond anything not yet produced.
//!
//! When a batch fails (transaction aborted, delivery timed out) every batch dispatched after it
//! is stale too: [`OffsetBook::fail`] starts a new *epoch*, records the lowest offset of each
//! partition still in flight as the rewind point, and refuses later dispatches of the old epoch.
//! The source then seeks back (see `source.rs`), merging in the records it still holds, so
//! every record not completed is consumed again — nothing lost; duplicates only in
//! at-least-once mode (exactly-once aborts the transaction that held them).

use std::collections::{BTreeMap, VecDeque};

use super::batcher::OffsetRange;

/// A dispatch refused because a rewind started after the batch was formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("batch of epoch {batch_epoch} is stale (current epoch {current_epoch}); rewind first")]
pub struct StaleEpoch {
    pub batch_epoch: u64,
    pub current_epoch: u64,
}

/// In-flight batches and committed positions of the input topic's partitions.
#[derive(Debug, Default)]
pub struct OffsetBook {
    epoch: u64,
    in_flight: VecDeque<(u64, BTreeMap<i32, OffsetRange>)>,
    committed: BTreeMap<i32, i64>,
    rewind: BTreeMap<i32, i64>,
}

impl OffsetBook {
    pub fn new() -> OffsetBook {
        OffsetBook::default()
    }

    /// Current epoch; batches formed in an older one are stale.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Batches dispatched and not yet completed or failed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Next offset committed per partition during this assignment.
    pub fn committed(&self) -> &BTreeMap<i32, i64> {
        &self.committed
    }

    /// Registers a closed batch formed in `epoch`.
    pub fn dispatch(
        &mut self,
        epoch: u64,
        id: u64,
        ranges: BTreeMap<i32, OffsetRange>,
    ) -> Result<(), StaleEpoch> {
        if epoch != self.epoch {
            return Err(StaleEpoch { batch_epoch: epoch, current_epoch: self.epoch });
        }
        self.in_flight.push_back((id, ranges));
        Ok(())
    }

    /// Whether batch `id` of `epoch` is still wanted (false after a rewind dropped it).
    pub fn is_current(&self, epoch: u64, id: u64) -> bool {
        epoch == self.epoch && self.in_flight.iter().any(|(i, _)| *i == id)
    }

    /// Marks the oldest batch done and returns the offsets to commit (next offset to read,
    /// per partition), only those that move forward. `None` if `id` is not the oldest
    /// in-flight batch (a stale or out-of-order completion, which must not commit).
    pub fn complete(&mut self, id: u64) -> Option<BTreeMap<i32, i64>> {
        if self.in_flight.front().map(|(i, _)| *i) != Some(id) {
            return None;
        }
        let (_, ranges) = self.in_flight.pop_front()?;
        let mut commit = BTreeMap::new();
        for (partition, range) in ranges {
            let next = range.last + 1;
            let slot = self.committed.entry(partition).or_insert(i64::MIN);
            if next > *slot {
                *slot = next;
                commit.insert(partition, next);
            }
        }
        Some(commit)
    }

    /// Offsets that completing every in-flight batch up to and including `id` would commit,
    /// without completing them (for `send_offsets_to_transaction`, which precedes the commit
    /// that completes them; a transaction may hold several consecutive batches). `None` if
    /// `id` is not in flight.
    pub fn commit_offsets_through(&self, id: u64) -> Option<BTreeMap<i32, i64>> {
        let end = self.in_flight.iter().position(|(i, _)| *i == id)?;
        let mut offsets = BTreeMap::new();
        for (_, ranges) in self.in_flight.iter().take(end + 1) {
            for (partition, range) in ranges {
                let next = offsets.entry(*partition).or_insert(range.last + 1);
                *next = (*next).max(range.last + 1);
            }
        }
        Some(offsets)
    }

    /// Throws away all in-flight work: a new epoch begins, and the lowest in-flight offset per
    /// partition joins the pending rewind points. Returns the new epoch.
    pub fn fail(&mut self) -> u64 {
        for (_, ranges) in self.in_flight.drain(..) {
            for (partition, range) in ranges {
                let point = self.rewind.entry(partition).or_insert(range.first);
                *point = (*point).min(range.first);
            }
        }
        self.epoch += 1;
        self.epoch
    }

    /// Pending rewind points (for logs; the source takes them with [`OffsetBook::take_rewind`]).
    pub fn rewind_points(&self) -> &BTreeMap<i32, i64> {
        &self.rewind
    }

    /// Pending rewind points, taken by the source when it moves to the new epoch.
    pub fn take_rewind(&mut self) -> BTreeMap<i32, i64> {
        std::mem::take(&mut self.rewind)
    }

    /// Forgets partitions that were revoked: their commit positions now belong to another
    /// member, and a pending rewind for them is moot (the new owner starts from the group's
    /// committed offset).
    pub fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.committed.remove(p);
            self.rewind.remove(p);
        }
    }
}

/// Merges rewind points with the first offsets of records the source still holds: the lower
/// of the two is where consumption must resume.
pub fn merge_rewind(points: &mut BTreeMap<i32, i64>, held: &BTreeMap<i32, OffsetRange>) {
    for (partition, range) in held {
        let point = points.entry(*partition).or_insert(range.first);
        *point = (*point).min(range.first);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(items: &[(i32, i64, i64)]) -> BTreeMap<i32, OffsetRange> {
        items.iter().map(|&(p, first, last)| (p, OffsetRange { first, last })).collect()
    }

    #[test]
    fn commits_follow_completed_batches_in_order() {
        let mut book = OffsetBook::new();
        book.dispatch(0, 1, ranges(&[(0, 0, 9), (1, 0, 4)])).unwrap();
        book.dispatch(0, 2, ranges(&[(0, 10, 19)])).unwrap();
        assert_eq!(book.in_flight(), 2);
        assert_eq!(book.complete(2), None, "a later batch cannot complete before an earlier one");
        assert_eq!(book.commit_offsets_through(1).unwrap(), BTreeMap::from([(0, 10), (1, 5)]));
        assert_eq!(
            book.commit_offsets_through(2).unwrap(),
            BTreeMap::from([(0, 20), (1, 5)]),
            "a transaction holding both batches commits the furthest offset of each partition"
        );
        assert_eq!(book.commit_offsets_through(3), None);
        assert_eq!(book.in_flight(), 2, "asking completes nothing");
        assert_eq!(book.complete(1).unwrap(), BTreeMap::from([(0, 10), (1, 5)]));
        assert_eq!(book.complete(2).unwrap(), BTreeMap::from([(0, 20)]));
        assert_eq!(book.in_flight(), 0);
        assert_eq!(book.committed(), &BTreeMap::from([(0, 20), (1, 5)]));
    }

    #[test]
    fn commits_never_move_backwards() {
        let mut book = OffsetBook::new();
        book.dispatch(0, 1, ranges(&[(0, 10, 19)])).unwrap();
        book.complete(1).unwrap();
        // A replay after a rewind re-reads 5..=12: nothing below 20 is committed again.
        book.dispatch(0, 2, ranges(&[(0, 5, 12), (1, 0, 0)])).unwrap();
        assert_eq!(book.complete(2).unwrap(), BTreeMap::from([(1, 1)]));
    }

    #[test]
    fn failure_rewinds_to_the_lowest_in_flight_offset_and_fences_the_old_epoch() {
        let mut book = OffsetBook::new();
        book.dispatch(0, 1, ranges(&[(0, 0, 9)])).unwrap();
        book.complete(1).unwrap();
        book.dispatch(0, 2, ranges(&[(0, 10, 19), (1, 3, 3)])).unwrap();
        book.dispatch(0, 3, ranges(&[(0, 20, 29), (2, 7, 8)])).unwrap();
        assert_eq!(book.fail(), 1);
        assert_eq!(book.in_flight(), 0);
        assert!(!book.is_current(0, 3));
        let err = book.dispatch(0, 4, ranges(&[(3, 0, 0)])).unwrap_err();
        assert_eq!(err, StaleEpoch { batch_epoch: 0, current_epoch: 1 });
        assert_eq!(book.complete(2), None, "failed batches never commit");
        let mut points = book.take_rewind();
        assert_eq!(points, BTreeMap::from([(0, 10), (1, 3), (2, 7)]));
        // The source merges what it still held (the refused batch 4 and its open batch).
        merge_rewind(&mut points, &ranges(&[(3, 0, 0), (0, 30, 31)]));
        assert_eq!(points, BTreeMap::from([(0, 10), (1, 3), (2, 7), (3, 0)]));
        assert!(book.take_rewind().is_empty());
        book.dispatch(1, 5, ranges(&[(0, 10, 12)])).unwrap();
        assert!(book.is_current(1, 5));
    }

    #[test]
    fn two_failures_before_the_source_rewinds_keep_the_lowest_points() {
        let mut book = OffsetBook::new();
        book.dispatch(0, 1, ranges(&[(0, 50, 59)])).unwrap();
        book.fail();
        book.dispatch(1, 2, ranges(&[(0, 60, 61)])).unwrap();
        book.fail();
        assert_eq!(book.epoch(), 2);
        assert_eq!(book.take_rewind(), BTreeMap::from([(0, 50)]));
    }

    #[test]
    fn revoked_partitions_are_forgotten() {
        let mut book = OffsetBook::new();
        book.dispatch(0, 1, ranges(&[(0, 0, 1), (1, 0, 1)])).unwrap();
        book.complete(1).unwrap();
        book.dispatch(0, 2, ranges(&[(1, 2, 3)])).unwrap();
        book.fail();
        book.revoke(&[1]);
        assert_eq!(book.committed(), &BTreeMap::from([(0, 2)]));
        assert!(book.take_rewind().is_empty());
    }
}
