//! Deadlines keyed by what they wake, for the sans-IO cores.
//!
//! A core arms a timer for a key (an SA, a tunnel) and, when it fires, services that key and
//! arms again whatever the key still needs. [`Timers`] keeps at most one deadline per key, the
//! earliest asked for, and forgets a key's deadline when the key goes ([`Timers::cancel`]). So
//! the set is never larger than the number of live keys: a flood that creates and evicts
//! half-open SAs at a high rate leaves nothing behind (a binary heap with lazy deletion kept two
//! entries per evicted SA until its deadline, about 140 MiB under a full-rate spoofed flood).

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::time::Instant;

/// At most one deadline per key; see the module documentation.
#[derive(Debug)]
pub struct Timers<K> {
    at: HashMap<K, Instant>,
    queue: BTreeSet<(Instant, K)>,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Self {
            at: HashMap::new(),
            queue: BTreeSet::new(),
        }
    }
}

impl<K: Copy + Ord + Hash> Timers<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes `key` at `at`, or at its current deadline if that is earlier: the service run then
    /// arms again what the key still needs.
    pub fn arm(&mut self, at: Instant, key: K) {
        match self.at.get(&key) {
            Some(&t) if t <= at => {}
            Some(&t) => {
                self.queue.remove(&(t, key));
                self.queue.insert((at, key));
                self.at.insert(key, at);
            }
            None => {
                self.queue.insert((at, key));
                self.at.insert(key, at);
            }
        }
    }

    /// Forgets `key`'s deadline (the key has gone).
    pub fn cancel(&mut self, key: K) {
        if let Some(t) = self.at.remove(&key) {
            self.queue.remove(&(t, key));
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.queue.first().map(|&(t, _)| t)
    }

    /// The key of the earliest deadline if it is due at `now`, removed from the set.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let &(t, key) = self.queue.first()?;
        if t > now {
            return None;
        }
        self.queue.pop_first();
        self.at.remove(&key);
        Some(key)
    }

    /// Deadlines held (one per key).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_deadline_per_key_the_earliest() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = Timers::new();
        t.arm(t0 + 5 * s, 1u32);
        t.arm(t0 + 9 * s, 1);
        t.arm(t0 + 3 * s, 1);
        t.arm(t0 + 4 * s, 2);
        assert_eq!(t.len(), 2);
        assert_eq!(t.next(), Some(t0 + 3 * s));
        assert_eq!(t.pop_due(t0 + 2 * s), None);
        assert_eq!(t.pop_due(t0 + 10 * s), Some(1));
        assert_eq!(t.pop_due(t0 + 10 * s), Some(2));
        assert_eq!(t.pop_due(t0 + 10 * s), None);
        assert!(t.is_empty());
    }

    #[test]
    fn a_cancelled_key_leaves_nothing() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        for k in 0..10_000u64 {
            t.arm(t0 + Duration::from_secs(30), k);
            t.arm(t0 + Duration::from_secs(2), k);
            if k >= 10 {
                t.cancel(k - 10);
            }
        }
        assert_eq!(t.len(), 10);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(2)));
        t.cancel(12_345); // unknown: nothing happens
        assert_eq!(t.len(), 10);
    }
}
