//! Data parallelism without a transport: the `Collective` a data-parallel trainer talks to (an
//! MPI communicator in the `sinter` binary, `SingleProcess` here), gradient buckets, and run hashes.

use crate::error::{ModelError, Result};
use std::ops::Range;

/// The group of processes ("ranks") that train one model together, each on a shard of every
/// batch. Every rank must call each method in the same order with buffers of the same length.
pub trait Collective {
    /// This process's index, 0..size.
    fn rank(&self) -> usize;
    /// How many ranks train together.
    fn size(&self) -> usize;
    /// Replaces `values` on every rank by their element-wise sum over all ranks.
    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()>;
    /// Replaces `values` on every rank by rank 0's.
    fn broadcast_from_root(&self, values: &mut [f32]) -> Result<()>;
    /// Every rank's `values` (all of the same length), concatenated in rank order, on every rank.
    fn all_gather_u64(&self, values: &[u64]) -> Result<Vec<u64>>;
}

/// One process alone: the collectives are identities. A trainer given this runs the
/// data-parallel path (separate gradient and update programs) on one rank.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _values: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn broadcast_from_root(&self, _values: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_gather_u64(&self, values: &[u64]) -> Result<Vec<u64>> {
        Ok(values.to_vec())
    }
}

/// Whether any rank says yes (a Ctrl-C seen on one rank stops all of them at the same step).
pub fn any_rank(collective: &dyn Collective, yes: bool) -> Result<bool> {
    let mut v = [if yes { 1.0 } else { 0.0 }];
    collective.all_reduce_sum(&mut v)?;
    Ok(v[0] > 0.0)
}

/// Largest gradient bucket, in f32 values (4 MiB). Large enough that each all-reduce is
/// bandwidth-bound rather than latency-bound, small enough that a bucket could be sent while
/// later ones are still being computed.
pub const BUCKET_VALUES: usize = 1 << 20;

/// How the gradients of all parameters are laid out in one flat buffer and cut into buckets.
/// The buffer ends with a few extra values (the step's loss and metrics), so they travel with
/// the last bucket instead of in a message of their own.
#[derive(Clone, Debug, PartialEq)]
pub struct GradientLayout {
    /// Where each parameter's gradient lies in the flat buffer.
    pub params: Vec<Range<usize>>,
    /// Consecutive ranges covering the whole buffer; each is all-reduced as one message.
    pub buckets: Vec<Range<usize>>,
    /// Length of the flat buffer: every gradient, then the extras.
    pub len: usize,
    /// Values after the gradients (loss and metrics).
    pub extras: usize,
}

impl GradientLayout {
    /// Lays out gradients of `sizes` values each, in order, in buckets of at most `cap` values
    /// (a parameter larger than `cap` is cut across buckets).
    pub fn new(sizes: &[usize], cap: usize) -> Self {
        Self::with_extras(sizes, 2, cap)
    }

    /// As [`GradientLayout::new`], with `extras` values after the gradients.
    pub fn with_extras(sizes: &[usize], extras: usize, cap: usize) -> Self {
        assert!(cap > 0, "bucket capacity must be positive");
        let mut params = Vec::with_capacity(sizes.len());
        let mut at = 0;
        for &n in sizes {
            params.push(at..at + n);
            at += n;
        }
        let len = at + extras;
        let buckets = (0..len)
            .step_by(cap)
            .map(|start| start..(start + cap).min(len))
            .collect();
        Self {
            params,
            buckets,
            len,
            extras,
        }
    }

    /// Index of the first extra (the loss) in the flat buffer.
    pub fn extras_at(&self) -> usize {
        self.len - self.extras
    }

    /// Bytes one rank sends into the all-reduce per step (before the algorithm's own factor).
    pub fn bytes(&self) -> usize {
        4 * self.len
    }
}

/// FNV-1a, 64 bits: a hash that is the same in every build and on every machine, unlike std's.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Checks that every rank was started with the same settings: each `(what, value)` is hashed,
/// the hashes are gathered, and the first difference is an error naming the setting, the ranks
/// and this rank's value.
pub fn check_same_settings(
    collective: &dyn Collective,
    settings: &[(String, String)],
) -> Result<()> {
    let (rank, size) = (collective.rank(), collective.size());
    // First the count, so that ranks with different setting lists fail here, not in a collective
    // with mismatched lengths.
    let counts = collective.all_gather_u64(&[settings.len() as u64])?;
    if let Some(r) = counts.iter().position(|&c| c != counts[0]) {
        return Err(ModelError::Distributed(format!(
            "rank {r} checks {} settings but rank 0 checks {}: are all ranks running the same sinter?",
            counts[r], counts[0]
        )));
    }
    let hashes: Vec<u64> = settings
        .iter()
        .map(|(what, value)| stable_hash(format!("{what}={value}").as_bytes()))
        .collect();
    let all = collective.all_gather_u64(&hashes)?;
    let n = settings.len();
    for (k, (what, value)) in settings.iter().enumerate() {
        let differs: Vec<usize> = (0..size).filter(|&r| all[r * n + k] != all[k]).collect();
        if !differs.is_empty() {
            let list: Vec<String> = differs.iter().map(|r| r.to_string()).collect();
            return Err(ModelError::Distributed(format!(
                "the ranks were started with different {what}: rank(s) {} differ from rank 0 (this is rank {rank}, with {what} = {value})",
                list.join(", ")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_covers_every_gradient_once_in_capped_buckets() {
        let l = GradientLayout::new(&[5, 3, 9], 4);
        assert_eq!(l.params, vec![0..5, 5..8, 8..17]);
        assert_eq!(l.len, 19);
        assert_eq!(l.extras_at(), 17);
        assert_eq!(l.buckets.first().map(|b| b.start), Some(0));
        assert_eq!(l.buckets.last().map(|b| b.end), Some(19));
        for w in l.buckets.windows(2) {
            assert_eq!(w[0].end, w[1].start, "buckets are consecutive");
        }
        assert!(l.buckets.iter().all(|b| !b.is_empty() && b.len() <= 4));
        assert_eq!(l.buckets.len(), 5);
    }

    #[test]
    fn stable_hash_is_fnv1a() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    /// Two fake ranks whose gathered hashes are given: rank 1's copy of a setting differs.
    struct FakeRanks {
        rank: usize,
        other: Vec<u64>,
    }

    impl Collective for FakeRanks {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            2
        }
        fn all_reduce_sum(&self, _: &mut [f32]) -> Result<()> {
            unreachable!("not used by the settings check")
        }
        fn broadcast_from_root(&self, _: &mut [f32]) -> Result<()> {
            unreachable!("not used by the settings check")
        }
        fn all_gather_u64(&self, values: &[u64]) -> Result<Vec<u64>> {
            let other = if values.len() == 1 {
                vec![values[0]]
            } else {
                self.other.clone()
            };
            Ok(values.iter().copied().chain(other).collect())
        }
    }

    #[test]
    fn a_setting_that_differs_on_one_rank_is_named() {
        let mine = vec![
            ("model".to_string(), "cnn".to_string()),
            ("batch".to_string(), "64".to_string()),
        ];
        let hash = |s: &str| stable_hash(s.as_bytes());
        let same = FakeRanks {
            rank: 0,
            other: vec![hash("model=cnn"), hash("batch=64")],
        };
        check_same_settings(&same, &mine).expect("identical settings pass");
        let differ = FakeRanks {
            rank: 0,
            other: vec![hash("model=cnn"), hash("batch=32")],
        };
        let e = check_same_settings(&differ, &mine).unwrap_err().to_string();
        assert!(
            e.contains("different batch") && e.contains("rank(s) 1"),
            "{e}"
        );
        assert!(check_same_settings(&SingleProcess, &mine).is_ok());
    }
}
