//! The slots of limit keys this process holds: its jobs with a concurrency
//! limit that are leased (buffered or running) or have ended without the
//! end recorded yet, by key. Each holds a slot of its key in the store.
//!
//! A fetch takes the oldest jobs of its queues whatever their keys, and the
//! store parks a job of a key whose slots are all held (a write to park it,
//! another to unpark it). So the fetcher buffers limited jobs ahead of its
//! slots in proportion to the share of the keys it holds that are not held
//! to their limit, and no further than its share of those keys' slots (they
//! are shared with the other processes taking the same queues:
//! [`Holds::allow`]): with many keys and few of them full, about as deep
//! as jobs without limits (few round trips a job); with a few keys, all
//! full, no deeper than its fixed minimum.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct Holds(Mutex<Held>);

#[derive(Default)]
struct Held {
    /// By key: jobs held, and the key's concurrency as the newest said.
    keys: HashMap<String, (u32, u32)>,
    /// Keys whose held jobs reach their concurrency.
    full: usize,
    /// The slots of the keys held (their concurrencies added up).
    slots: usize,
    /// The jobs held.
    held: usize,
}

impl Held {
    /// Sets key's count and limit (`None`: forgets the key), keeping
    /// `full`, `slots` and `held`.
    fn set(&mut self, key: &str, now: Option<(u32, u32)>) {
        let before = self.keys.get(key).copied();
        // (Whether the key is held to its limit, its slots, its jobs held.)
        let measure = |h: Option<(u32, u32)>| match h {
            Some((n, l)) => (usize::from(n >= l), l as usize, n as usize),
            None => (0, 0, 0),
        };
        let (f0, s0, h0) = measure(before);
        let (f1, s1, h1) = measure(now);
        self.full = self.full + f1 - f0;
        self.slots = self.slots + s1 - s0;
        self.held = self.held + h1 - h0;
        match now {
            Some(h) => {
                self.keys.insert(key.to_owned(), h);
            }
            None => {
                self.keys.remove(key);
            }
        }
    }
}

impl Holds {
    /// A job of `key` (concurrency `limit`) was leased.
    pub(crate) fn take(&self, key: &str, limit: u32) {
        let mut h = self.0.lock().unwrap();
        let held = h.keys.get(key).map_or(0, |&(n, _)| n);
        h.set(key, Some((held + 1, limit)));
    }

    /// The end of a job of `key` was recorded (or it was handed back).
    pub(crate) fn release(&self, key: &str) {
        let mut h = self.0.lock().unwrap();
        let Some(&(held, limit)) = h.keys.get(key) else {
            return;
        };
        h.set(key, (held > 1).then_some((held - 1, limit)));
    }

    /// Of `target` jobs worth buffering, with `buffered` buffered now, how
    /// many the keys held allow while the last fetch brought jobs with a
    /// concurrency limit, when `peers` processes (this one included) take
    /// jobs from its queues: the target scaled by the share of the keys
    /// held that are not held to their limit, and no more than the
    /// buffered jobs and this process's share of those keys' slots that it
    /// does not hold yet (a fetch takes no more jobs than the keys it knows
    /// have slots for; the other processes take theirs).
    pub(crate) fn allow(&self, target: usize, buffered: usize, peers: usize) -> usize {
        let h = self.0.lock().unwrap();
        let keys = h.keys.len();
        if keys == 0 {
            return 0;
        }
        let share = (h.slots / peers.max(1)).saturating_sub(h.held);
        (target * (keys - h.full) / keys).min(buffered + share)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_shrinks_with_the_share_of_keys_held_to_their_limit() {
        let h = Holds::default();
        assert_eq!(
            h.allow(100, 0, 1),
            0,
            "nothing held: nothing known of the keys"
        );
        for k in ["a", "b", "c", "d"] {
            h.take(k, 3);
        }
        assert_eq!(
            h.allow(100, 0, 1),
            8,
            "the 8 slots of a, b, c and d not held"
        );
        assert_eq!(h.allow(4, 0, 1), 4);
        h.take("a", 3);
        h.take("a", 3);
        assert_eq!(h.allow(4, 0, 1), 3, "a is full: a quarter of the keys");
        h.take("b", 3);
        h.take("b", 3);
        assert_eq!(h.allow(4, 0, 1), 2, "a and b full: half");
        assert_eq!(h.allow(100, 0, 1), 4, "the slots of c and d");
        h.release("a");
        assert_eq!(h.allow(4, 0, 1), 3, "a has a slot again");
        h.release("a");
        h.release("a");
        assert_eq!(h.allow(3, 0, 1), 2, "a forgotten: b full of three keys");
        for k in ["b", "b", "b", "c", "d"] {
            h.release(k);
        }
        assert_eq!(h.allow(100, 0, 1), 0, "nothing held again");
    }

    #[test]
    fn a_few_keys_all_full_leave_no_buffer() {
        let h = Holds::default();
        for k in ["t1", "t2", "t3", "t4"] {
            h.take(k, 1);
        }
        assert_eq!(h.allow(40, 0, 1), 0);
        h.release("t3");
        assert_eq!(h.allow(40, 0, 1), 0, "t3 forgotten, the three others full");
    }

    #[test]
    fn many_keys_with_room_allow_a_deep_buffer() {
        let h = Holds::default();
        for k in 0..100 {
            h.take(&format!("tenant:{k}"), 2);
        }
        assert_eq!(h.allow(350, 0, 1), 100, "a slot free on each of 100 keys");
        for k in 0..50 {
            h.take(&format!("tenant:{k}"), 2);
        }
        assert_eq!(h.allow(350, 0, 1), 50, "half the keys full, 50 slots free");
        assert_eq!(h.allow(60, 0, 1), 30);
        assert_eq!(
            h.allow(350, 40, 1),
            90,
            "40 of the jobs held are buffered: room for them and 50 more"
        );
        assert_eq!(
            h.allow(350, 40, 2),
            40,
            "two processes share the 200 slots: this one holds its 100 (150 > 100)"
        );
        for k in 0..50 {
            h.release(&format!("tenant:{k}"));
        }
        assert_eq!(
            h.allow(350, 0, 2),
            0,
            "100 held of 100 keys: the process's share of their 200 slots"
        );
        assert_eq!(h.allow(350, 0, 1), 100, "alone, it may take the other 100");
    }

    #[test]
    fn a_key_over_its_limit_counts_once() {
        let h = Holds::default();
        // A limit lowered while jobs of the key ran: more held than allowed.
        h.take("k", 3);
        h.take("k", 3);
        h.take("k", 1);
        h.take("j", 5);
        assert_eq!(h.allow(10, 0, 1), 2, "k's slot and j's 5, four held");
        h.release("k");
        h.release("k");
        assert_eq!(h.allow(10, 0, 1), 4, "k holds 1 of 1: still full");
        h.release("k");
        assert_eq!(h.allow(10, 0, 1), 4, "j alone: its 4 free slots");
    }
}
