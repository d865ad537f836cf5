//! A bounded map: least-recently-used eviction by entry count, and entries that expire.
//!
//! Owns: which cached writer schemas and plans stay in memory, and for how long a "does not
//! exist" answer is believed. Must not: know what it stores.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

struct Entry<V> {
    value: V,
    /// The tick of the last lookup or insert.
    used: u64,
    expires: Option<Instant>,
}

/// At most `capacity` entries; when full, an insert evicts the entry looked up least recently
/// (an O(n) scan, paid only on inserts into a full cache).
pub(super) struct Cache<K, V> {
    capacity: usize,
    entries: HashMap<K, Entry<V>>,
    tick: u64,
}

impl<K: Hash + Eq + Clone, V> Cache<K, V> {
    pub(super) fn new(capacity: usize) -> Self {
        Cache {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            tick: 0,
        }
    }

    /// The value for `key`, unless absent or expired (an expired entry is dropped).
    /// The clock is read only for entries that can expire: a plan hit costs no clock read.
    pub(super) fn get(&mut self, key: &K) -> Option<&V> {
        self.get_at(key, Instant::now)
    }

    fn get_at(&mut self, key: &K, now: impl FnOnce() -> Instant) -> Option<&V> {
        let expired = self.entries.get(key)?.expires.is_some_and(|at| now() >= at);
        if expired {
            self.entries.remove(key);
            return None;
        }
        self.tick += 1;
        let entry = self.entries.get_mut(key)?;
        entry.used = self.tick;
        Some(&entry.value)
    }

    /// Stores `value` for `key`, for `ttl` if given, evicting the least recently used entry
    /// when full.
    pub(super) fn insert(&mut self, key: K, value: V, ttl: Option<(Duration, Instant)>) {
        if self.entries.len() >= self.capacity
            && !self.entries.contains_key(&key)
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
        self.tick += 1;
        self.entries.insert(
            key,
            Entry {
                value,
                used: self.tick,
                expires: ttl.map(|(ttl, now)| now + ttl),
            },
        );
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_cache_evicts_the_least_recently_used_entry() {
        let mut c = Cache::new(2);
        c.insert(1, "one", None);
        c.insert(2, "two", None);
        assert_eq!(c.get(&1), Some(&"one")); // 2 is now the least recently used
        c.insert(3, "three", None);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&2), None);
        assert_eq!(c.get(&1), Some(&"one"));
        assert_eq!(c.get(&3), Some(&"three"));
        // Replacing a present key evicts nothing.
        c.insert(3, "THREE", None);
        assert_eq!(c.get(&1), Some(&"one"));
        assert_eq!(c.get(&3), Some(&"THREE"));
    }

    #[test]
    fn an_entry_with_a_ttl_expires() {
        let now = Instant::now();
        let mut c = Cache::new(4);
        c.insert("gone", 404, Some((Duration::from_secs(60), now)));
        assert_eq!(
            c.get_at(&"gone", || now + Duration::from_secs(59)),
            Some(&404)
        );
        assert_eq!(c.get_at(&"gone", || now + Duration::from_secs(60)), None);
        assert_eq!(c.len(), 0);
    }
}
