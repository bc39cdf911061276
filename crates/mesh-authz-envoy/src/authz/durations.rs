//! Check durations of one thread between two flushes, in fixed memory: a log-linear histogram
//! of microseconds (exact below 32 µs, then 32 sub-buckets per power of two, so a value is kept
//! within 1/64 of itself). A flush replays each bucket as its midpoint into Envoy's histogram.

/// Exact values below this; log-linear from here.
const LINEAR: u64 = 32;
/// Sub-buckets per power of two (`LINEAR` = 2^5).
const SUB_BITS: u32 = 5;
/// Powers of two kept above the linear part: up to 2^40 µs (12 days); longer is clamped.
const OCTAVES: usize = 36;
const BUCKETS: usize = LINEAR as usize + OCTAVES * LINEAR as usize;

/// Counts per bucket (see the module doc).
pub(crate) struct Durations {
    counts: Box<[u32; BUCKETS]>,
    total: u64,
}

impl Default for Durations {
    fn default() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }
}

fn bucket(micros: u64) -> usize {
    if micros < LINEAR {
        return micros as usize;
    }
    // `octave` >= 0: how many doublings above the linear part.
    let top = 63 - micros.leading_zeros();
    let octave = (top - SUB_BITS) as usize;
    if octave >= OCTAVES {
        return BUCKETS - 1;
    }
    let sub = ((micros >> (top - SUB_BITS)) & (LINEAR - 1)) as usize;
    LINEAR as usize + octave * LINEAR as usize + sub
}

/// The midpoint of bucket `index`.
fn midpoint(index: usize) -> u64 {
    if index < LINEAR as usize {
        return index as u64;
    }
    let octave = (index - LINEAR as usize) / LINEAR as usize;
    let sub = ((index - LINEAR as usize) % LINEAR as usize) as u64;
    let width = 1u64 << octave;
    let low = (LINEAR + sub) << octave;
    low + width / 2
}

impl Durations {
    /// Counts one check of `micros`.
    pub(crate) fn record(&mut self, micros: u64) {
        self.record_n(micros, 1);
    }

    /// Counts `n` checks of `micros`.
    pub(crate) fn record_n(&mut self, micros: u64, n: u32) {
        let b = &mut self.counts[bucket(micros)];
        *b = b.saturating_add(n);
        self.total += u64::from(n);
    }

    /// Whether nothing was recorded since the last drain.
    pub(crate) fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Every recorded value as `(value, count)`, values being bucket midpoints; empties the set.
    pub(crate) fn drain(&mut self) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        for (i, c) in self.counts.iter_mut().enumerate() {
            if *c > 0 {
                out.push((midpoint(i), *c));
                *c = 0;
            }
        }
        self.total = 0;
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn values_come_back_within_a_sixty_fourth() {
        for v in (0..5000u64).chain([65_535, 1 << 20, 123_456_789, (1 << 40) - 1]) {
            let m = midpoint(bucket(v));
            let err = m.abs_diff(v) as f64;
            assert!(err <= (v as f64) / 64.0 + 0.5, "{v} -> {m}");
        }
    }

    #[test]
    fn buckets_are_ordered_and_in_range() {
        let mut last = 0;
        for v in 0..(1u64 << 20) {
            let b = bucket(v);
            assert!(b >= last && b < BUCKETS);
            last = b;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn drain_returns_counts_once() {
        let mut d = Durations::default();
        for v in [3, 3, 1000, 1001] {
            d.record(v);
        }
        let got = d.drain();
        assert_eq!(got.iter().map(|(_, c)| c).sum::<u32>(), 4);
        assert!(got.contains(&(3, 2)));
        assert!(d.is_empty() && d.drain().is_empty());
    }
}
