//! Offset bookkeeping, without Kafka: which offsets may be committed, and where to seek back
//! to when a chain's work is thrown away.
//!
//! The rule is "commit only what is done": the deliver step registers a batch with
//! [`OffsetBook::push`] when it starts producing it and *completes* it once all its outputs
//! (predictions and dead letters) are acknowledged (at-least-once) or its transaction committed
//! (exactly-once). Batches complete in order (each step hands them on in order), so the commit
//! position of a partition after a batch is that batch's last offset + 1 — never beyond
//! anything not yet produced.
//!
//! A book lives as long as its chain. When the chain's work is thrown away (a transaction
//! aborted, a delivery failed), the processor seeks every partition back to
//! [`rewind_points`]: the first offset the chain received that it did not complete — so every
//! record not completed is consumed again. Nothing is lost; duplicates only at least once
//! (exactly-once aborts the transaction that held them).

use std::collections::{BTreeMap, VecDeque};

use super::batcher::OffsetRange;

/// Batches being delivered and the positions completed, for one chain.
#[derive(Debug, Default)]
pub struct OffsetBook {
    in_flight: VecDeque<(u64, BTreeMap<i32, OffsetRange>)>,
    completed: BTreeMap<i32, i64>,
}

impl OffsetBook {
    pub fn new() -> OffsetBook {
        OffsetBook::default()
    }

    /// Batches registered and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Next offset to read per partition after everything completed.
    pub fn completed(&self) -> &BTreeMap<i32, i64> {
        &self.completed
    }

    /// Registers a batch whose outputs are being produced.
    pub fn push(&mut self, id: u64, ranges: BTreeMap<i32, OffsetRange>) {
        self.in_flight.push_back((id, ranges));
    }

    /// Marks the oldest batch done and returns the offsets to commit (next offset to read,
    /// per partition), only those that move forward. `None` if `id` is not the oldest
    /// batch in flight (an out-of-order completion, which must not commit).
    pub fn complete(&mut self, id: u64) -> Option<BTreeMap<i32, i64>> {
        if self.in_flight.front().map(|(i, _)| *i) != Some(id) {
            return None;
        }
        let (_, ranges) = self.in_flight.pop_front()?;
        let mut commit = BTreeMap::new();
        for (partition, range) in ranges {
            let next = range.last + 1;
            let slot = self.completed.entry(partition).or_insert(i64::MIN);
            if next > *slot {
                *slot = next;
                commit.insert(partition, next);
            }
        }
        Some(commit)
    }

    /// Offsets that completing every batch up to and including `id` would commit, without
    /// completing them (for `send_offsets_to_transaction`, which precedes the commit that
    /// completes them; a transaction may hold several consecutive batches). `None` if `id` is
    /// not in flight.
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
}

/// Where each partition must resume when a chain is thrown away: the first offset the chain
/// received (`received_from`, per partition) that it did not complete (`completed`, the next
/// offset after everything completed). Partitions the chain never received from keep their
/// position and get no point.
pub fn rewind_points(
    received_from: &BTreeMap<i32, i64>,
    completed: &BTreeMap<i32, i64>,
) -> BTreeMap<i32, i64> {
    received_from
        .iter()
        .map(|(partition, first)| {
            (*partition, completed.get(partition).map_or(*first, |done| (*done).max(*first)))
        })
        .collect()
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
        book.push(1, ranges(&[(0, 0, 9), (1, 0, 4)]));
        book.push(2, ranges(&[(0, 10, 19)]));
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
        assert_eq!(book.completed(), &BTreeMap::from([(0, 20), (1, 5)]));
    }

    #[test]
    fn commits_never_move_backwards() {
        let mut book = OffsetBook::new();
        book.push(1, ranges(&[(0, 10, 19)]));
        book.complete(1).unwrap();
        // A replay re-reading 5..=12: nothing below 20 is committed again.
        book.push(2, ranges(&[(0, 5, 12), (1, 0, 0)]));
        assert_eq!(book.complete(2).unwrap(), BTreeMap::from([(1, 1)]));
    }

    #[test]
    fn a_thrown_away_chain_rewinds_to_the_first_offset_not_completed() {
        let mut book = OffsetBook::new();
        book.push(1, ranges(&[(0, 0, 9)]));
        book.complete(1).unwrap();
        // In flight when the chain fails: never completed, so never committed.
        book.push(2, ranges(&[(0, 10, 19), (1, 3, 3)]));
        book.push(3, ranges(&[(0, 20, 29), (2, 7, 8)]));
        // The chain received from these offsets on (partition 3 only into its open batch).
        let received_from = BTreeMap::from([(0, 0), (1, 3), (2, 7), (3, 0)]);
        assert_eq!(
            rewind_points(&received_from, book.completed()),
            BTreeMap::from([(0, 10), (1, 3), (2, 7), (3, 0)])
        );
    }

    #[test]
    fn partitions_the_chain_never_read_keep_their_position() {
        let completed = BTreeMap::from([(0, 60)]);
        assert!(rewind_points(&BTreeMap::new(), &completed).is_empty());
        // Completed past the first received offset: resume after what was completed.
        assert_eq!(rewind_points(&BTreeMap::from([(0, 50)]), &completed), BTreeMap::from([(0, 60)]));
    }
}
