//! Counts kept per thread: each thread adds to its own shard (its own cache lines), and a read
//! sums the shards.
//!
//! [`WithHot`] adds the shard sums to the registered families when `/metrics` is read.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

use super::{DURATION_BUCKETS, REVOCATION_SOURCES};

/// A hot series.
#[derive(Debug, Clone, Copy)]
pub(super) enum Series {
    /// `checks_total{decision="allow",reason="ok"}`.
    Allowed,
    /// `token_cache_total{outcome="hit"}`.
    CacheHit,
    /// `token_cache_total{outcome="miss"}`.
    CacheMiss,
    /// `revocation_lookups_total{outcome="active",source=REVOCATION_SOURCES[i]}`.
    RevocationActive(usize),
}

/// One histogram's counts in one shard.
#[derive(Default)]
struct HistogramShard {
    /// Observations per bucket (not cumulative); above the last bound only in `count`.
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    count: AtomicU64,
    /// The sum of the observations (`f64` bits).
    sum: AtomicU64,
}

/// One thread's counts, on cache lines of their own.
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    allowed: AtomicU64,
    cache_hit: AtomicU64,
    cache_miss: AtomicU64,
    revocation_active: [AtomicU64; 3],
    /// `check_duration_seconds` for allow (0) and deny (1).
    durations: [HistogramShard; 2],
}

impl Shard {
    fn counter(&self, series: Series) -> Option<&AtomicU64> {
        match series {
            Series::Allowed => Some(&self.allowed),
            Series::CacheHit => Some(&self.cache_hit),
            Series::CacheMiss => Some(&self.cache_miss),
            Series::RevocationActive(i) => self.revocation_active.get(i),
        }
    }
}

/// The shards of one metrics registry.
pub(super) struct HotCounts {
    shards: Box<[Shard]>,
}

/// This thread's shard number, handed out in turn as threads first count: the first
/// `shards` threads (the runtime's workers, in practice) each get one of their own.
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|i| *i)
}

impl HotCounts {
    /// Shards for the CPUs this process may use (twice over, for threads beyond the
    /// workers), between 8 and 256.
    pub(super) fn new() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let n = (cpus * 2).next_power_of_two().clamp(8, 256);
        Self {
            shards: (0..n).map(|_| Shard::default()).collect(),
        }
    }

    fn shard(&self) -> &Shard {
        // `shards` is never empty; `% len` keeps the index in range whatever the count.
        &self.shards[thread_index() % self.shards.len()]
    }

    pub(super) fn add(&self, series: Series) {
        if let Some(c) = self.shard().counter(series) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One observation (seconds) of histogram `which` (0: allow, 1: deny).
    pub(super) fn observe(&self, which: usize, seconds: f64) {
        let Some(h) = self.shard().durations.get(which) else {
            return;
        };
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| seconds <= *b) {
            h.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        // The shard is this thread's: the loop runs once unless a thread shares it.
        let _ = h
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + seconds).to_bits())
            });
        // Last, so a read never sees more bucketed observations than counted ones.
        h.count.fetch_add(1, Ordering::Release);
    }

    pub(super) fn sum(&self, series: Series) -> u64 {
        self.shards
            .iter()
            .filter_map(|s| s.counter(series))
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Histogram `which` summed over the shards: per-bucket counts, count, sum.
    pub(super) fn histogram(&self, which: usize) -> ([u64; DURATION_BUCKETS.len()], u64, f64) {
        let mut buckets = [0u64; DURATION_BUCKETS.len()];
        let (mut count, mut sum) = (0, 0.0);
        for h in self.shards.iter().filter_map(|s| s.durations.get(which)) {
            count += h.count.load(Ordering::Acquire);
            for (total, b) in buckets.iter_mut().zip(&h.buckets) {
                *total += b.load(Ordering::Relaxed);
            }
            sum += f64::from_bits(h.sum.load(Ordering::Relaxed));
        }
        // Bucketed observations never exceed `count` (counted last, read first).
        (buckets, count.max(buckets.iter().sum()), sum)
    }
}

/// A registered metric family with the shard sums of its hot series added when it is read.
pub(super) struct WithHot {
    pub(super) inner: Box<dyn Collector>,
    pub(super) hot: std::sync::Arc<HotCounts>,
}

impl Collector for WithHot {
    fn desc(&self) -> Vec<&Desc> {
        self.inner.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.inner.collect();
        for family in &mut families {
            let name = family.name().to_string();
            let mut metrics = family.take_metric();
            match name.as_str() {
                "checks_total" => {
                    add_to_counter(&mut metrics, &[("decision", "allow"), ("reason", "ok")], {
                        self.hot.sum(Series::Allowed)
                    })
                }
                "token_cache_total" => {
                    add_to_counter(
                        &mut metrics,
                        &[("outcome", "hit")],
                        self.hot.sum(Series::CacheHit),
                    );
                    add_to_counter(
                        &mut metrics,
                        &[("outcome", "miss")],
                        self.hot.sum(Series::CacheMiss),
                    );
                }
                "revocation_lookups_total" => {
                    for (i, source) in REVOCATION_SOURCES.iter().enumerate() {
                        let n = self.hot.sum(Series::RevocationActive(i));
                        // A source never looked up has no series, as before sharding.
                        if n > 0 {
                            add_counter_series(
                                &mut metrics,
                                &[("outcome", "active"), ("source", source)],
                                n,
                            );
                        }
                    }
                }
                "check_duration_seconds" => {
                    for (i, decision) in ["allow", "deny"].iter().enumerate() {
                        add_to_histogram(&mut metrics, decision, &self.hot.histogram(i));
                    }
                }
                _ => {}
            }
            family.set_metric(metrics);
        }
        families
    }
}

fn labels_are(m: &prometheus::proto::Metric, labels: &[(&str, &str)]) -> bool {
    let have = m.get_label();
    have.len() == labels.len()
        && labels
            .iter()
            .all(|(k, v)| have.iter().any(|l| l.name() == *k && l.value() == *v))
}

/// Adds `n` to the counter series with exactly `labels`, if the family has it.
fn add_to_counter(metrics: &mut [prometheus::proto::Metric], labels: &[(&str, &str)], n: u64) {
    if let Some(m) = metrics.iter_mut().find(|m| labels_are(m, labels)) {
        let mut c = m.get_counter().clone();
        c.set_value(c.get_value() + n as f64);
        m.set_counter(c);
    }
}

/// Adds `n` to the counter series with exactly `labels` (given in label-name order), creating it.
fn add_counter_series(
    metrics: &mut Vec<prometheus::proto::Metric>,
    labels: &[(&str, &str)],
    n: u64,
) {
    if metrics.iter().any(|m| labels_are(m, labels)) {
        add_to_counter(metrics, labels, n);
        return;
    }
    let pairs = labels
        .iter()
        .map(|(k, v)| {
            let mut l = prometheus::proto::LabelPair::default();
            l.set_name((*k).to_string());
            l.set_value((*v).to_string());
            l
        })
        .collect();
    let mut m = prometheus::proto::Metric::from_label(pairs);
    let mut c = prometheus::proto::Counter::default();
    c.set_value(n as f64);
    m.set_counter(c);
    // Series are exported sorted by their label values.
    let at = metrics
        .iter()
        .position(|x| label_values(x) > labels.iter().map(|(_, v)| *v).collect::<Vec<_>>())
        .unwrap_or(metrics.len());
    metrics.insert(at, m);
}

fn label_values(m: &prometheus::proto::Metric) -> Vec<&str> {
    m.get_label().iter().map(|l| l.value()).collect()
}

/// Adds a shard histogram to the `decision` series, if the family has it.
fn add_to_histogram(
    metrics: &mut [prometheus::proto::Metric],
    decision: &str,
    (buckets, count, sum): &([u64; DURATION_BUCKETS.len()], u64, f64),
) {
    let Some(m) = metrics
        .iter_mut()
        .find(|m| labels_are(m, &[("decision", decision)]))
    else {
        return;
    };
    let mut h = m.get_histogram().clone();
    let mut cumulative = 0;
    let mut out = h.get_bucket().to_vec();
    for (b, n) in out.iter_mut().zip(buckets) {
        cumulative += n;
        b.set_cumulative_count(b.cumulative_count() + cumulative);
    }
    h.set_bucket(out);
    h.set_sample_count(h.get_sample_count() + count);
    h.set_sample_sum(h.get_sample_sum() + sum);
    m.set_histogram(h);
}
