//! Every pipeline the launchers can ask for, as data: each entry point and the values each of its
//! override constants takes, built by each launcher module from its own override functions.
//!
//! Each launcher module (`matmul`, `conv`, …) has a `specializations()` that runs the function its
//! launches take their override constants from over that function's whole input domain (every
//! variant, flag, activation, head size …), so the list cannot drift from the launchers: in debug
//! builds [`Gpu::pipeline`](crate::Gpu) also checks every pipeline it makes against it. The
//! portability checks (naga's SPIR-V/GLSL/HLSL/MSL output, Dawn) compile [`EntrySpecializations::check_sets`]
//! of every entry: each value of every override at least once, and every pair of values of the
//! overrides with few values (flags) together.

use crate::shaders::Shader;
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// One override constant of an entry point and every value its launcher gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct OverrideDomain {
    /// The WGSL `override` name.
    pub name: &'static str,
    /// The values, ascending, each once.
    pub values: Vec<f64>,
}

/// One entry point of one shader with the override constants its launcher sets (the workgroup
/// width `WG`, which follows the device, is not among them: see [`Shader::takes_workgroup_width`]).
#[derive(Clone, Debug, PartialEq)]
pub struct EntrySpecializations {
    /// The shader file.
    pub shader: Shader,
    /// The entry point's name.
    pub entry: &'static str,
    /// Its override constants, in the order the launcher sets them.
    pub overrides: Vec<OverrideDomain>,
}

/// Overrides with at most this many values are checked pairwise with each other; larger ones
/// (an activation code, a head size) have each value checked once.
const PAIRWISE_MOST_VALUES: usize = 4;

/// An override with more values than this (attention's head size) is checked at this many of
/// them, spread evenly over its range, ends included.
const MOST_CHECKED_VALUES: usize = 16;

impl EntrySpecializations {
    /// An entry point its launcher runs with no override constants.
    pub fn plain(shader: Shader, entry: &'static str) -> Self {
        Self {
            shader,
            entry,
            overrides: Vec::new(),
        }
    }

    /// An entry point launched with each of `launches` (override sets from the launcher's own
    /// override function); each name's values are collected.
    ///
    /// Panics if two launches set different names: a launcher sets the same names every time.
    pub fn from_launches(
        shader: Shader,
        entry: &'static str,
        launches: impl IntoIterator<Item = Vec<(&'static str, f64)>>,
    ) -> Self {
        let mut overrides: Vec<OverrideDomain> = Vec::new();
        let mut values: Vec<BTreeSet<u64>> = Vec::new();
        for (i, launch) in launches.into_iter().enumerate() {
            if i == 0 {
                overrides = launch
                    .iter()
                    .map(|&(name, _)| OverrideDomain {
                        name,
                        values: Vec::new(),
                    })
                    .collect();
                values = vec![BTreeSet::new(); launch.len()];
            }
            let names: Vec<&str> = launch.iter().map(|&(n, _)| n).collect();
            let expected: Vec<&str> = overrides.iter().map(|o| o.name).collect();
            assert_eq!(
                names,
                expected,
                "{}.wgsl::{entry}: launches set different overrides",
                shader.name()
            );
            for (set, &(_, v)) in values.iter_mut().zip(&launch) {
                // Ordered as numbers: the override values are whole numbers ≥ 0, whose f64
                // bit patterns sort as the numbers do.
                set.insert(v.to_bits());
            }
        }
        for (o, set) in overrides.iter_mut().zip(values) {
            o.values = set.into_iter().map(f64::from_bits).collect();
        }
        Self {
            shader,
            entry,
            overrides,
        }
    }

    /// `Ok` when `overrides` is one of the launches this entry point was declared with (the same
    /// names, each value one the launcher gives it); otherwise what differs.
    pub fn admits(&self, overrides: &[(&str, f64)]) -> Result<(), String> {
        let names: BTreeSet<&str> = overrides.iter().map(|&(n, _)| n).collect();
        let declared: BTreeSet<&str> = self.overrides.iter().map(|o| o.name).collect();
        if names != declared || names.len() != overrides.len() {
            return Err(format!(
                "{}.wgsl::{} is launched with overrides {names:?}, declared with {declared:?}",
                self.shader.name(),
                self.entry
            ));
        }
        for &(name, value) in overrides {
            let domain = self
                .overrides
                .iter()
                .find(|o| o.name == name)
                .expect("declared");
            if !domain.values.contains(&value) {
                return Err(format!(
                    "{}.wgsl::{}: override {name} = {value} is not among the declared {:?}",
                    self.shader.name(),
                    self.entry,
                    domain.values
                ));
            }
        }
        Ok(())
    }

    /// The override sets the portability checks compile this entry point with: every checked
    /// value of every override at least once, and every pair of values of two overrides with at
    /// most four values in one set (a greedy covering array, deterministic).
    /// One empty set for an entry point without overrides.
    pub fn check_sets(&self) -> Vec<Vec<(&'static str, f64)>> {
        let checked: Vec<Vec<f64>> = self
            .overrides
            .iter()
            .map(|o| spread(&o.values, MOST_CHECKED_VALUES))
            .collect();
        let small = |i: usize| checked[i].len() <= PAIRWISE_MOST_VALUES;
        // What must be covered: (override, value index) alone, and pairs of small ones.
        let mut singles: BTreeSet<(usize, usize)> = BTreeSet::new();
        let mut pairs: BTreeSet<(usize, usize, usize, usize)> = BTreeSet::new();
        for (i, vi) in checked.iter().enumerate() {
            for a in 0..vi.len() {
                singles.insert((i, a));
                for (j, vj) in checked.iter().enumerate().skip(i + 1) {
                    if small(i) && small(j) {
                        for b in 0..vj.len() {
                            pairs.insert((i, a, j, b));
                        }
                    }
                }
            }
        }
        let mut sets = Vec::new();
        while !(singles.is_empty() && pairs.is_empty()) {
            // Start from an uncovered pair while one is left, else an uncovered single; fill the
            // other overrides with the values that cover the most that is still uncovered.
            let mut row: Vec<Option<usize>> = vec![None; checked.len()];
            if let Some(&(i, a, j, b)) = pairs.iter().next() {
                row[i] = Some(a);
                row[j] = Some(b);
            } else if let Some(&(i, a)) = singles.iter().next() {
                row[i] = Some(a);
            }
            for k in 0..checked.len() {
                if row[k].is_some() {
                    continue;
                }
                let gain = |v: usize| {
                    let mut g = usize::from(singles.contains(&(k, v))) * 2;
                    for (m, set) in row.iter().enumerate() {
                        if let Some(w) = *set {
                            let key = if m < k { (m, w, k, v) } else { (k, v, m, w) };
                            g += usize::from(pairs.contains(&key));
                        }
                    }
                    g
                };
                let best = (0..checked[k].len())
                    .max_by_key(|&v| (gain(v), std::cmp::Reverse(v)))
                    .expect("every override has a value");
                row[k] = Some(best);
            }
            let row: Vec<usize> = row.into_iter().map(|v| v.expect("filled")).collect();
            for (i, &a) in row.iter().enumerate() {
                singles.remove(&(i, a));
                for (j, &b) in row.iter().enumerate().skip(i + 1) {
                    pairs.remove(&(i, a, j, b));
                }
            }
            sets.push(
                row.iter()
                    .enumerate()
                    .map(|(i, &a)| (self.overrides[i].name, checked[i][a]))
                    .collect(),
            );
        }
        if sets.is_empty() {
            sets.push(Vec::new());
        }
        sets
    }
}

/// At most `most` of `values`, spread evenly, first and last included.
fn spread(values: &[f64], most: usize) -> Vec<f64> {
    if values.len() <= most {
        return values.to_vec();
    }
    let last = values.len() - 1;
    let mut picked: Vec<f64> = (0..most)
        .map(|i| values[(i * last + (most - 1) / 2) / (most - 1)])
        .collect();
    picked.dedup();
    picked
}

/// Every entry point of every shader with the override values its launcher uses.
pub fn all() -> &'static [EntrySpecializations] {
    static ALL: OnceLock<Vec<EntrySpecializations>> = OnceLock::new();
    ALL.get_or_init(|| {
        use super::*;
        [
            attention::specializations(),
            batch_norm::specializations(),
            conv::specializations(),
            elementwise::specializations(),
            embedding::specializations(),
            loss::specializations(),
            matmul::specializations(),
            matmul_f16::specializations(),
            norm::specializations(),
            optim::specializations(),
            pool::specializations(),
            reduce::specializations(),
            select::specializations(),
            softmax::specializations(),
        ]
        .concat()
    })
}

/// The declared specializations of `shader`'s `entry`, if a launcher declares it.
pub fn of(shader: Shader, entry: &str) -> Option<&'static EntrySpecializations> {
    all()
        .iter()
        .find(|e| e.shader == shader && e.entry == entry)
}

/// Panics, naming the pipeline, when no launcher declares `entry` of `shader` with `overrides`:
/// the check debug builds make on every new pipeline, so that the kernel tests catch a launcher
/// that sets an override its declaration (and so the portability checks) lacks.
#[cfg(debug_assertions)]
pub(crate) fn assert_declared(shader: Shader, entry: &str, overrides: &[(&str, f64)]) {
    let Some(declared) = of(shader, entry) else {
        panic!(
            "{}.wgsl::{entry} is launched but no launcher declares it in its specializations()",
            shader.name()
        );
    };
    if let Err(e) = declared.admits(overrides) {
        panic!("{e}: add it to the launcher's specializations()");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(overrides: &[(&'static str, &[f64])]) -> EntrySpecializations {
        EntrySpecializations {
            shader: Shader::Matmul,
            entry: "test",
            overrides: overrides
                .iter()
                .map(|&(name, values)| OverrideDomain {
                    name,
                    values: values.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn launches_collect_each_names_values() {
        let e = EntrySpecializations::from_launches(
            Shader::Matmul,
            "m",
            [
                vec![("A", 1.0), ("B", 4.0)],
                vec![("A", 0.0), ("B", 4.0)],
                vec![("A", 1.0), ("B", 2.0)],
            ],
        );
        assert_eq!(e.overrides[0].values, vec![0.0, 1.0]);
        assert_eq!(e.overrides[1].values, vec![2.0, 4.0]);
        assert!(e.admits(&[("B", 2.0), ("A", 0.0)]).is_ok());
        let wrong = e.admits(&[("A", 0.0), ("B", 3.0)]).unwrap_err();
        assert!(
            wrong.contains("B = 3") && wrong.contains("[2.0, 4.0]"),
            "{wrong}"
        );
        assert!(e.admits(&[("A", 0.0)]).unwrap_err().contains("declared"));
        assert!(e.admits(&[("A", 0.0), ("B", 2.0), ("C", 1.0)]).is_err());
    }

    #[test]
    #[should_panic(expected = "different overrides")]
    fn a_launcher_that_changes_its_names_is_caught() {
        EntrySpecializations::from_launches(
            Shader::Matmul,
            "m",
            [vec![("A", 1.0)], vec![("B", 1.0)]],
        );
    }

    #[test]
    fn check_sets_cover_every_value_and_every_pair_of_flags() {
        let flags: Vec<(&'static str, &[f64])> = vec![
            ("A", &[0.0, 1.0]),
            ("B", &[0.0, 1.0]),
            ("C", &[0.0, 1.0]),
            ("D", &[0.0, 1.0]),
            ("E", &[0.0, 1.0]),
            ("ACT", &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        ];
        let e = entry(&flags);
        let sets = e.check_sets();
        for (i, (ni, vi)) in flags.iter().enumerate() {
            for &a in vi.iter() {
                assert!(
                    sets.iter().any(|s| s[i] == (*ni, a)),
                    "{ni} = {a} unchecked"
                );
                for (nj, vj) in flags.iter().skip(i + 1).filter(|f| f.1.len() <= 4) {
                    if vi.len() > 4 {
                        continue;
                    }
                    for &b in vj.iter() {
                        let j = flags.iter().position(|f| f.0 == *nj).unwrap();
                        assert!(
                            sets.iter().any(|s| s[i].1 == a && s[j].1 == b),
                            "{ni} = {a} with {nj} = {b} unchecked"
                        );
                    }
                }
            }
        }
        // Far fewer than the 2⁵ · 7 = 224 combinations, at least one per activation.
        assert!(sets.len() >= 7 && sets.len() <= 12, "{} sets", sets.len());
    }

    #[test]
    fn a_long_domain_is_checked_at_spread_values() {
        let dims: Vec<f64> = (1..=128).map(f64::from).collect();
        let picked = spread(&dims, 16);
        assert_eq!(picked.len(), 16);
        assert_eq!((picked[0], picked[15]), (1.0, 128.0));
        assert!(picked.windows(2).all(|w| w[0] < w[1]));
        let e = entry(&[("HEAD_DIM", &dims), ("CAUSAL", &[0.0, 1.0])]);
        assert_eq!(e.check_sets().len(), 16);
        assert_eq!(entry(&[]).check_sets(), vec![Vec::new()]);
    }
}
