//! Counters of what happened to jobs, kept by the store itself (so the
//! counts of every worker process add up, and survive their restarts), by
//! job kind and queue: stints that succeeded, failed, were interrupted, and
//! jobs recovered from dead processes, with a histogram of stint durations.
//!
//! A store updates them in the same transaction that records a stint's end
//! or a recovery (`Store::complete`, `Store::recover_orphans`), so a count
//! is never ahead of or behind the job states it describes. Dashboards and
//! Prometheus read them with `Store::metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::Outcome;

/// Upper bounds, in seconds, of the stint-duration histogram's buckets
/// (Prometheus `le`); a last, implicit bucket holds everything longer.
pub const STINT_SECONDS_BUCKETS: [f64; 12] = [
    0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0,
];

/// The index of the bucket a stint of `ms` milliseconds falls in:
/// `0..STINT_SECONDS_BUCKETS.len()`, or `len()` when longer than the last
/// bound.
pub fn bucket_of(ms: u64) -> usize {
    STINT_SECONDS_BUCKETS
        .iter()
        .position(|le| ms as f64 <= le * 1000.0)
        .unwrap_or(STINT_SECONDS_BUCKETS.len())
}

/// The counters of one (kind, queue).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KindMetrics {
    /// The job kind counted (empty in `Metrics::totals`).
    pub kind: String,
    /// The queue counted (empty in `Metrics::totals`).
    pub queue: String,
    /// Stints that ended with the job succeeded.
    pub processed: u64,
    /// Stints that failed (to `retrying` or `dead`).
    pub failed: u64,
    /// Stints that stopped without failing: shutdown or maximum stint time
    /// (back to the queue), paused or cancelled by an operator.
    pub interrupted: u64,
    /// Jobs taken back from a process that died.
    pub recovered: u64,
    /// Durations of the stints counted above (recoveries excluded).
    pub stint_seconds: Histogram,
}

/// A histogram over [`STINT_SECONDS_BUCKETS`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Observations per bucket, not cumulative: `buckets[i]` counts those
    /// in `(bound[i-1], bound[i]]`; the last entry (index
    /// `STINT_SECONDS_BUCKETS.len()`) counts those above the last bound.
    /// Empty when nothing was observed.
    pub buckets: Vec<u64>,
    /// Observations in all (the sum of `buckets`).
    pub count: u64,
    /// Sum of the observations, in milliseconds.
    pub sum_ms: u64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, d: Duration) {
        let ms = d.as_millis() as u64;
        if self.buckets.is_empty() {
            self.buckets = vec![0; STINT_SECONDS_BUCKETS.len() + 1];
        }
        self.buckets[bucket_of(ms)] += 1;
        self.count += 1;
        self.sum_ms += ms;
    }

    /// Cumulative counts per bound of [`STINT_SECONDS_BUCKETS`], then the
    /// total (`+Inf`), as Prometheus exposes them.
    pub fn cumulative(&self) -> Vec<u64> {
        let mut acc = 0;
        (0..=STINT_SECONDS_BUCKETS.len())
            .map(|i| {
                acc += self.buckets.get(i).copied().unwrap_or(0);
                acc
            })
            .collect()
    }
}

/// Every (kind, queue)'s counters, as `Store::metrics` returns them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Sorted by kind, then queue.
    pub kinds: Vec<KindMetrics>,
}

impl Metrics {
    /// The counters of one (kind, queue), if any were recorded.
    pub fn get(&self, kind: &str, queue: &str) -> Option<&KindMetrics> {
        self.kinds
            .iter()
            .find(|k| k.kind == kind && k.queue == queue)
    }

    /// The sums over every kind and queue.
    pub fn totals(&self) -> KindMetrics {
        let mut t = KindMetrics::default();
        for k in &self.kinds {
            t.processed += k.processed;
            t.failed += k.failed;
            t.interrupted += k.interrupted;
            t.recovered += k.recovered;
            let h = &k.stint_seconds;
            if t.stint_seconds.buckets.len() < h.buckets.len() {
                t.stint_seconds.buckets.resize(h.buckets.len(), 0);
            }
            for (i, n) in h.buckets.iter().enumerate() {
                t.stint_seconds.buckets[i] += n;
            }
            t.stint_seconds.count += h.count;
            t.stint_seconds.sum_ms += h.sum_ms;
        }
        t
    }
}

/// The counter increments of many stint ends, summed per (kind, queue) and
/// counter name, so that a store writes one row per name for a whole batch
/// of completions (`Store::complete`) instead of one per completion.
///
/// Names, as stores keep them: `processed`, `failed`, `interrupted`,
/// `recovered`, `stint_count`, `stint_sum_ms`, and `stint_bucket_N` for
/// histogram bucket N (see [`Histogram::buckets`]).
#[derive(Debug, Default)]
pub struct MetricsDelta {
    by_kind: BTreeMap<(String, String), KindMetrics>,
}

impl MetricsDelta {
    fn entry(&mut self, kind: &str, queue: &str) -> &mut KindMetrics {
        self.by_kind
            .entry((kind.to_owned(), queue.to_owned()))
            .or_insert_with(|| KindMetrics {
                kind: kind.to_owned(),
                queue: queue.to_owned(),
                ..Default::default()
            })
    }

    /// Counts a stint of a `kind` job in `queue` that ended with `outcome`
    /// after running for `ran`.
    pub fn stint_ended(&mut self, kind: &str, queue: &str, outcome: &Outcome, ran: Duration) {
        let m = self.entry(kind, queue);
        match outcome {
            Outcome::Succeeded { .. } => m.processed += 1,
            Outcome::Retry { .. } | Outcome::Dead { .. } => m.failed += 1,
            Outcome::Requeue { .. }
            | Outcome::Paused
            | Outcome::Cancelled
            | Outcome::Snooze { .. } => m.interrupted += 1,
        }
        m.stint_seconds.observe(ran);
    }

    /// Counts a job recovered from a dead process.
    pub fn recovered(&mut self, kind: &str, queue: &str) {
        self.entry(kind, queue).recovered += 1;
    }

    /// True when nothing was counted: the store has nothing to write.
    pub fn is_empty(&self) -> bool {
        self.by_kind.is_empty()
    }

    /// Every non-zero increment as (kind, queue, counter name, amount).
    pub fn increments(&self) -> Vec<(&str, &str, String, u64)> {
        let mut out = Vec::new();
        for m in self.by_kind.values() {
            let mut add = |name: String, n: u64| {
                if n > 0 {
                    out.push((m.kind.as_str(), m.queue.as_str(), name, n));
                }
            };
            add("processed".into(), m.processed);
            add("failed".into(), m.failed);
            add("interrupted".into(), m.interrupted);
            add("recovered".into(), m.recovered);
            add("stint_count".into(), m.stint_seconds.count);
            add("stint_sum_ms".into(), m.stint_seconds.sum_ms);
            for (i, n) in m.stint_seconds.buckets.iter().enumerate() {
                add(format!("stint_bucket_{i}"), *n);
            }
        }
        out
    }
}

/// Builds `Metrics` back from stored (kind, queue, counter name, value)
/// rows, as [`MetricsDelta::increments`] names them; unknown names are
/// ignored.
pub fn from_rows<I: IntoIterator<Item = (String, String, String, u64)>>(rows: I) -> Metrics {
    let mut delta = MetricsDelta::default();
    for (kind, queue, name, value) in rows {
        let m = delta.entry(&kind, &queue);
        match name.as_str() {
            "processed" => m.processed = value,
            "failed" => m.failed = value,
            "interrupted" => m.interrupted = value,
            "recovered" => m.recovered = value,
            "stint_count" => m.stint_seconds.count = value,
            "stint_sum_ms" => m.stint_seconds.sum_ms = value,
            other => {
                let Some(i) = other
                    .strip_prefix("stint_bucket_")
                    .and_then(|i| i.parse::<usize>().ok())
                    .filter(|i| *i <= STINT_SECONDS_BUCKETS.len())
                else {
                    continue;
                };
                let b = &mut m.stint_seconds.buckets;
                if b.is_empty() {
                    b.resize(STINT_SECONDS_BUCKETS.len() + 1, 0);
                }
                b[i] = value;
            }
        }
    }
    Metrics {
        kinds: delta.by_kind.into_values().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_inclusive() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(100), 0);
        assert_eq!(bucket_of(101), 1);
        assert_eq!(bucket_of(3_600_000), 10);
        assert_eq!(bucket_of(u64::MAX / 2), STINT_SECONDS_BUCKETS.len());
    }

    #[test]
    fn a_delta_round_trips_through_rows() {
        let mut d = MetricsDelta::default();
        let ok = Outcome::Succeeded { result: None };
        d.stint_ended("A", "q", &ok, Duration::from_millis(50));
        d.stint_ended("A", "q", &ok, Duration::from_millis(700));
        d.stint_ended("A", "q", &Outcome::Paused, Duration::from_secs(2));
        d.recovered("B", "r");
        let rows = d
            .increments()
            .into_iter()
            .map(|(k, q, n, v)| (k.to_owned(), q.to_owned(), n, v));
        let m = from_rows(rows);
        let a = m.get("A", "q").expect("A");
        assert_eq!((a.processed, a.failed, a.interrupted), (2, 0, 1));
        assert_eq!(a.stint_seconds.count, 3);
        assert_eq!(a.stint_seconds.sum_ms, 2_750);
        let c = a.stint_seconds.cumulative();
        assert_eq!((c[0], c[1], c[2], c[3]), (1, 1, 2, 3));
        assert_eq!(*c.last().unwrap(), 3);
        assert_eq!(m.get("B", "r").map(|b| b.recovered), Some(1));
        let t = m.totals();
        assert_eq!((t.processed, t.interrupted, t.recovered), (2, 1, 1));
    }
}
