//! Per-partition offset bookkeeping for the partitions this member owns.
//!
//! Owns: which source offsets are consumed, in flight and done, per assigned partition (a
//! *slot*), and the offset that may be committed: the highest offset below which every
//! consumed message is done ("highest contiguous acknowledged offset" + 1). Acks may arrive out
//! of order (records of one source partition go to several target partitions and the DLQ); a
//! commit never passes a message that is not done. Must not: talk to Kafka (callers pass in what
//! happened and take out what to commit).
//!
//! A slot is addressed by a small index so that a produced record can carry its source position
//! in the delivery opaque (`pack`/`unpack`) without allocating. A slot whose partition was revoked
//! while records were still in flight is retired, and reused only once those acks have drained,
//! so a late ack can never land on another partition's slot.

use std::collections::{HashMap, VecDeque};

/// Source offsets above this cannot be packed into a delivery opaque (2^48, ~2.8e14).
pub const MAX_OFFSET: i64 = (1 << OFFSET_BITS) - 1;
const OFFSET_BITS: u32 = 48;
/// Slot indexes above this cannot be packed (16 bits).
const MAX_SLOTS: usize = 1 << 16;

/// Where a consumed message came from, cheaply: its slot and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub slot: u16,
    pub offset: i64,
}

impl Position {
    /// The delivery opaque for a record produced for this position.
    pub fn pack(self) -> usize {
        ((self.slot as usize) << OFFSET_BITS) | (self.offset as usize & MAX_OFFSET as usize)
    }

    pub fn unpack(opaque: usize) -> Position {
        Position {
            slot: (opaque >> OFFSET_BITS) as u16,
            offset: (opaque & MAX_OFFSET as usize) as i64,
        }
    }
}

#[derive(Debug)]
struct Entry {
    offset: i64,
    /// Bytes produced for it and not yet acknowledged (0 once done).
    bytes: u32,
    done: bool,
}

#[derive(Debug)]
pub struct Slot {
    pub topic: String,
    pub partition: i32,
    /// Whether the partition is currently assigned to this member.
    pub active: bool,
    /// Consumed messages not yet done, in consumption order, and the done ones behind them.
    pending: VecDeque<Entry>,
    /// Next offset to consume after everything done (what a commit would store).
    done_through: Option<i64>,
    /// What was last handed out to commit.
    committed: Option<i64>,
    /// Exactly-once: the first offset consumed in the open transaction (where to rewind).
    pub txn_first: Option<i64>,
    /// Unique to this assignment of the partition, and renewed when it is rewound: a message
    /// polled under another epoch is consumed again from where the partition resumes, so the
    /// copy in hand must not be sent (see [`Slots::current`]).
    epoch: u64,
}

impl Slot {
    fn new(topic: &str, partition: i32, epoch: u64) -> Slot {
        Slot {
            topic: topic.to_string(),
            partition,
            active: true,
            epoch,
            pending: VecDeque::new(),
            done_through: None,
            committed: None,
            txn_first: None,
        }
    }

    fn advance(&mut self) {
        while let Some(e) = self.pending.front() {
            if !e.done {
                break;
            }
            self.done_through = Some(e.offset + 1);
            self.pending.pop_front();
        }
    }

    /// Messages consumed from this partition that are not done yet.
    pub fn in_flight(&self) -> usize {
        self.pending.iter().filter(|e| !e.done).count()
    }
}

/// What an ack released: whether it was known, and the bytes it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    pub bytes: usize,
}

#[derive(Debug, Default)]
pub struct Slots {
    slots: Vec<Slot>,
    /// topic → partition number → slot, for the active slots.
    by_topic: HashMap<String, Vec<Option<u16>>>,
    free: Vec<u16>,
    /// The last epoch handed out.
    epochs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error(
        "offset {offset} of {topic}[{partition}] is above {MAX_OFFSET}, the largest this version tracks"
    )]
    OffsetTooLarge {
        topic: String,
        partition: i32,
        offset: i64,
    },
    #[error("more than {MAX_SLOTS} partitions assigned at once")]
    TooManyPartitions,
}

impl Slots {
    /// Slots for newly assigned partitions (idempotent for ones already active).
    pub fn assign<'a>(
        &mut self,
        partitions: impl IntoIterator<Item = (&'a str, i32)>,
    ) -> Result<(), SlotError> {
        for (topic, partition) in partitions {
            if self.lookup(topic, partition).is_some() {
                continue;
            }
            self.epochs += 1;
            let epoch = self.epochs;
            let idx = match self.free.pop() {
                Some(i) => {
                    self.slots[i as usize] = Slot::new(topic, partition, epoch);
                    i
                }
                None => {
                    if self.slots.len() >= MAX_SLOTS {
                        return Err(SlotError::TooManyPartitions);
                    }
                    self.slots.push(Slot::new(topic, partition, epoch));
                    (self.slots.len() - 1) as u16
                }
            };
            let parts = self.by_topic.entry(topic.to_string()).or_default();
            let p = usize::try_from(partition).unwrap_or(0);
            if parts.len() <= p {
                parts.resize(p + 1, None);
            }
            parts[p] = Some(idx);
        }
        Ok(())
    }

    /// Forgets revoked partitions. A slot with records still in flight is retired: its late acks
    /// are ignored and it is reused once they have drained.
    pub fn revoke<'a>(&mut self, partitions: impl IntoIterator<Item = (&'a str, i32)>) {
        for (topic, partition) in partitions {
            let Some(idx) = self.lookup(topic, partition) else {
                continue;
            };
            if let Some(parts) = self.by_topic.get_mut(topic)
                && let Some(p) = usize::try_from(partition)
                    .ok()
                    .and_then(|p| parts.get_mut(p))
            {
                *p = None;
            }
            let slot = &mut self.slots[idx as usize];
            slot.active = false;
            slot.txn_first = None;
            slot.pending.retain(|e| !e.done);
            if slot.pending.is_empty() {
                self.free.push(idx);
            }
        }
    }

    /// The active slot of a consumed message's partition.
    pub fn lookup(&self, topic: &str, partition: i32) -> Option<u16> {
        let p = usize::try_from(partition).ok()?;
        self.by_topic.get(topic)?.get(p).copied().flatten()
    }

    pub fn get(&self, slot: u16) -> &Slot {
        &self.slots[slot as usize]
    }

    /// The epoch of an active slot, when its message is polled.
    pub fn epoch(&self, slot: u16) -> u64 {
        self.slots.get(slot as usize).map_or(0, |s| s.epoch)
    }

    /// Whether a message polled from `slot` under `epoch` may still be sent: its partition has
    /// stayed assigned and has not been rewound since. Revocations and rewinds of other
    /// partitions do not matter (under the cooperative protocol most partitions stay put, and
    /// their positions are already past the message in hand, so dropping it would lose it).
    pub fn current(&self, slot: u16, epoch: u64) -> bool {
        self.slots
            .get(slot as usize)
            .is_some_and(|s| s.active && s.epoch == epoch)
    }

    /// Records a consumed message; `bytes` are in flight for it until `ack` (0 and `done`: a skip
    /// or a record the delivery mode does not track one by one).
    pub fn consumed(&mut self, pos: Position, bytes: usize, done: bool) -> Result<(), SlotError> {
        let slot = &mut self.slots[pos.slot as usize];
        if pos.offset > MAX_OFFSET || pos.offset < 0 {
            return Err(SlotError::OffsetTooLarge {
                topic: slot.topic.clone(),
                partition: slot.partition,
                offset: pos.offset,
            });
        }
        if slot.txn_first.is_none() {
            slot.txn_first = Some(pos.offset);
        }
        if done && slot.pending.is_empty() {
            slot.done_through = Some(pos.offset + 1);
            return Ok(());
        }
        slot.pending.push_back(Entry {
            offset: pos.offset,
            bytes: if done {
                0
            } else {
                u32::try_from(bytes).unwrap_or(u32::MAX)
            },
            done,
        });
        Ok(())
    }

    /// Marks the message at `pos` done (its record was acknowledged). Returns the bytes it held,
    /// or `None` for an ack of a slot that was revoked and reused, or an unknown offset.
    pub fn ack(&mut self, pos: Position) -> Option<Released> {
        let idx = pos.slot as usize;
        let slot = self.slots.get_mut(idx)?;
        let i = slot
            .pending
            .binary_search_by_key(&pos.offset, |e| e.offset)
            .ok()?;
        let e = &mut slot.pending[i];
        if e.done {
            return None;
        }
        e.done = true;
        let bytes = std::mem::take(&mut e.bytes) as usize;
        if slot.active {
            slot.advance();
        } else {
            slot.pending.retain(|e| !e.done);
            if slot.pending.is_empty() {
                self.free.push(pos.slot);
            }
        }
        Some(Released { bytes })
    }

    /// Offsets that moved since the last call, as (topic, partition, next offset to consume),
    /// for the active partitions matching `filter`; marks them handed out.
    pub fn take_committable(
        &mut self,
        mut filter: impl FnMut(&str, i32) -> bool,
    ) -> Vec<(String, i32, i64)> {
        let mut out = Vec::new();
        for slot in self.slots.iter_mut().filter(|s| s.active) {
            if let Some(next) = slot.done_through
                && slot.committed != Some(next)
                && filter(&slot.topic, slot.partition)
            {
                out.push((slot.topic.clone(), slot.partition, next));
                slot.committed = Some(next);
            }
        }
        out
    }

    /// Every active partition's committable offset, moved or not (the final commit re-sends
    /// them all: an earlier asynchronous commit may have failed unseen).
    pub fn all_committable(&mut self) -> Vec<(String, i32, i64)> {
        self.slots
            .iter_mut()
            .filter(|s| s.active)
            .filter_map(|s| {
                let next = s.done_through?;
                s.committed = Some(next);
                Some((s.topic.clone(), s.partition, next))
            })
            .collect()
    }

    /// Forgets what was handed out for commit since `snapshot` was taken (the commit failed).
    pub fn uncommit(&mut self, offsets: &[(String, i32, i64)]) {
        for (topic, partition, _) in offsets {
            if let Some(idx) = self.lookup(topic, *partition) {
                self.slots[idx as usize].committed = None;
            }
        }
    }

    /// Exactly-once: (topic, partition, next offset) of every partition consumed from in the open
    /// transaction.
    pub fn in_transaction(&self) -> Vec<(String, i32, i64)> {
        self.slots
            .iter()
            .filter(|s| s.active && s.txn_first.is_some())
            .filter_map(|s| Some((s.topic.clone(), s.partition, s.done_through?)))
            .collect()
    }

    /// Exactly-once: every consumed message is done once its transaction commits.
    pub fn mark_all_done(&mut self) {
        for slot in self.slots.iter_mut().filter(|s| s.active) {
            for e in slot.pending.iter_mut() {
                e.done = true;
                e.bytes = 0;
            }
            slot.advance();
            slot.txn_first = None;
        }
    }

    /// Exactly-once, after an abort: forget everything consumed in the transaction; returns where
    /// each partition must be rewound to.
    pub fn rewind(&mut self) -> Vec<(String, i32, i64)> {
        let mut out = Vec::new();
        for slot in self.slots.iter_mut().filter(|s| s.active) {
            slot.pending.clear();
            if let Some(first) = slot.txn_first.take() {
                slot.done_through = Some(first);
                self.epochs += 1;
                slot.epoch = self.epochs;
                out.push((slot.topic.clone(), slot.partition, first));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots_with(parts: &[(&str, i32)]) -> Slots {
        let mut s = Slots::default();
        s.assign(parts.iter().copied()).expect("assign");
        s
    }

    fn pos(s: &Slots, topic: &str, partition: i32, offset: i64) -> Position {
        Position {
            slot: s.lookup(topic, partition).expect("assigned"),
            offset,
        }
    }

    #[test]
    fn pack_round_trips() {
        for (slot, offset) in [(0u16, 0i64), (1, 1), (65535, MAX_OFFSET), (7, 123_456_789)] {
            let p = Position { slot, offset };
            assert_eq!(Position::unpack(p.pack()), p);
        }
    }

    #[test]
    fn commit_stops_at_the_first_unacknowledged_offset() {
        let mut s = slots_with(&[("in", 0)]);
        for o in [10, 11, 13, 14] {
            s.consumed(pos(&s, "in", 0, o), 100, false).unwrap();
        }
        assert!(s.take_committable(|_, _| true).is_empty());
        // Out-of-order acks: 13 and 14 first.
        assert_eq!(s.ack(pos(&s, "in", 0, 14)), Some(Released { bytes: 100 }));
        s.ack(pos(&s, "in", 0, 13));
        assert!(s.take_committable(|_, _| true).is_empty());
        s.ack(pos(&s, "in", 0, 10));
        assert_eq!(
            s.take_committable(|_, _| true),
            vec![("in".to_string(), 0, 11)]
        );
        s.ack(pos(&s, "in", 0, 11));
        assert_eq!(
            s.take_committable(|_, _| true),
            vec![("in".to_string(), 0, 15)]
        );
        // Nothing moved: nothing to commit again.
        assert!(s.take_committable(|_, _| true).is_empty());
        // A duplicate ack releases nothing.
        assert_eq!(s.ack(pos(&s, "in", 0, 11)), None);
    }

    #[test]
    fn skips_behind_an_in_flight_message_wait_for_it() {
        let mut s = slots_with(&[("in", 0), ("in", 1)]);
        s.consumed(pos(&s, "in", 0, 0), 10, false).unwrap();
        s.consumed(pos(&s, "in", 0, 1), 0, true).unwrap();
        s.consumed(pos(&s, "in", 1, 5), 0, true).unwrap();
        assert_eq!(
            s.take_committable(|_, _| true),
            vec![("in".to_string(), 1, 6)]
        );
        s.ack(pos(&s, "in", 0, 0));
        assert_eq!(
            s.take_committable(|_, _| true),
            vec![("in".to_string(), 0, 2)]
        );
    }

    #[test]
    fn a_revoked_slot_ignores_late_acks_and_is_reused_only_after_they_drain() {
        let mut s = slots_with(&[("in", 0)]);
        let p = pos(&s, "in", 0, 3);
        s.consumed(p, 10, false).unwrap();
        s.revoke([("in", 0)]);
        assert_eq!(s.lookup("in", 0), None);
        s.assign([("other", 2)]).unwrap();
        assert_ne!(
            s.lookup("other", 2),
            Some(p.slot),
            "slot with acks in flight reused"
        );
        assert_eq!(s.ack(p), Some(Released { bytes: 10 }));
        assert!(s.take_committable(|_, _| true).is_empty());
        s.assign([("third", 0)]).unwrap();
        assert_eq!(s.lookup("third", 0), Some(p.slot), "drained slot reused");
    }

    #[test]
    fn rewind_returns_the_first_offset_of_the_open_transaction() {
        let mut s = slots_with(&[("in", 0), ("in", 1)]);
        for o in 0..3 {
            s.consumed(pos(&s, "in", 0, o), 0, true).unwrap();
        }
        s.mark_all_done();
        for o in 3..6 {
            s.consumed(pos(&s, "in", 0, o), 0, true).unwrap();
        }
        assert_eq!(s.rewind(), vec![("in".to_string(), 0, 3)]);
    }

    /// A message in hand stays sendable across the revocation of other partitions (the
    /// cooperative protocol's usual case: its partition's position is already past it), and
    /// only its own partition's revocation, reassignment (even into the same slot) or rewind
    /// makes it stale.
    #[test]
    fn a_message_in_hand_is_stale_only_when_its_own_partition_moved() {
        let mut s = slots_with(&[("in", 0), ("in", 1), ("in", 2)]);
        let p2 = s.lookup("in", 2).unwrap();
        let held = s.epoch(p2);
        assert!(s.current(p2, held));
        // Another partition revoked, then assigned back.
        s.revoke([("in", 0)]);
        s.assign([("in", 0)]).unwrap();
        assert!(s.current(p2, held), "other partitions moved");
        // An abort rewinds partition 1 (consumed in the transaction), not partition 2.
        s.consumed(pos(&s, "in", 1, 7), 0, true).unwrap();
        assert_eq!(s.rewind(), vec![("in".to_string(), 1, 7)]);
        assert!(s.current(p2, held), "another partition rewound");
        // Its own partition revoked: stale, and still stale once assigned back into its slot.
        s.revoke([("in", 2)]);
        assert!(!s.current(p2, held), "revoked");
        s.assign([("in", 2)]).unwrap();
        assert_eq!(s.lookup("in", 2), Some(p2), "the freed slot is reused");
        assert!(!s.current(p2, held), "revoked and assigned back");
        // Its own partition rewound by an abort: stale.
        let again = s.epoch(p2);
        s.consumed(pos(&s, "in", 2, 40), 0, true).unwrap();
        assert_eq!(s.rewind(), vec![("in".to_string(), 2, 40)]);
        assert!(!s.current(p2, again), "rewound");
    }
}
