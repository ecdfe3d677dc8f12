//! Autotuning: the first time a kernel family meets a shape class on an (adapter, driver) pair,
//! every variant the canary left enabled is checked against a CPU reference and timed, and the
//! fastest right one is kept, in memory and in `tune.json` in the cache folder.
//!
//! Families and their variants: the matrix product (`matmul_v1_naive` … `matmul_v5_subgroup`),
//! the three convolution passes (`conv2d_forward TM=4|8|16`, and the same for `conv2d_grad_input`
//! and `conv2d_grad_weight`), reductions over an axis (`reduce_rows`, `reduce_tree`,
//! `reduce_subgroup`), and the
//! attention layouts (named by their forward entry: `attention_forward`, 64 rows per workgroup,
//! and `attention_forward_sg`, 8 per subgroup; one choice serves forward and backward). A shape
//! class rounds each size up to a power of two and keeps what changes the code path (transposes,
//! vec4 alignment, kernel size, stride), so one tuning serves nearby shapes and batches alike. Lookups happen when a launch is prepared
//! (once per compiled program, never per step); the GPU backend tunes a plan's shapes one after
//! another before it prepares the plan ([`tune_kernels`]), so no timing runs beside other work.
//!
//! Tuning is on for devices opened with [`crate::Gpu::new`] unless `SINTER_NO_TUNE` is set
//! ([`NO_TUNE_ENV`]); [`Tuner::set_enabled`] switches it per device. Off, every launcher uses its
//! static rule ([`MatmulVariant::best_for`], the smallest covering `TM`, the tree kernel for long
//! or few rows).

mod attention;
mod measure;
#[cfg(test)]
mod tests;

use crate::adapter::AdapterReport;
use crate::canary::pair_key;
use crate::gpu::Gpu;
use crate::kernels::attention::{AttentionShape, AttentionVariant};
use crate::kernels::conv::{static_tm, tm_variant, Conv2dShape, ConvPass, TMS};
use crate::kernels::matmul::{MatmulShape, MatmulVariant};
use crate::kernels::reduce::{static_kernel, ReduceKernel, ReduceOp, ReduceShape};
use serde_json::{json, Value};
use sinter_ops::Kernel;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Set to anything but `0` or empty, devices opened with [`crate::Gpu::new`] do not tune: every
/// launcher uses its static rule (the CLI's `--no-tune` sets it).
pub const NO_TUNE_ENV: &str = "SINTER_NO_TUNE";
/// The tuner's cache file in the cache folder ([`crate::cache_file::cache_dir`]).
pub const CACHE_FILE: &str = "tune.json";
/// Version 1: choices keyed `<family> <class>`; a new family adds keys, not a version.
const CACHE_VERSION: u64 = 1;

/// Whether the environment leaves tuning on ([`NO_TUNE_ENV`] unset, empty or `0`).
pub fn enabled_by_env() -> bool {
    std::env::var(NO_TUNE_ENV).map_or(true, |v| v.is_empty() || v == "0")
}

/// A kernel family whose variants compute the same thing and may be swapped for one another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// `matmul.wgsl`'s numbered variants.
    Matmul,
    /// A convolution pass (its entry point), with `TM` rows per invocation as the variant.
    Conv(ConvPass),
    /// `reduce.wgsl`: a workgroup per output (`reduce_tree`) or an invocation (`reduce_rows`).
    Reduce,
    /// The attention layouts ([`AttentionVariant`]), forward and backward together.
    Attention,
}

impl Family {
    /// Every family, in the order `sinter tune` lists them.
    pub const ALL: [Family; 6] = [
        Family::Matmul,
        Family::Conv(ConvPass::Forward),
        Family::Conv(ConvPass::GradInput),
        Family::Conv(ConvPass::GradWeight),
        Family::Reduce,
        Family::Attention,
    ];

    /// The name keys begin with: `matmul`, or the pass's entry point.
    pub fn name(self) -> &'static str {
        match self {
            Family::Matmul => "matmul",
            Family::Conv(pass) => pass.entry(),
            Family::Reduce => "reduce",
            Family::Attention => "attention",
        }
    }

    /// Every variant of the family, as the canary names them.
    pub fn variants(self) -> Vec<String> {
        match self {
            Family::Matmul => MatmulVariant::ALL
                .iter()
                .map(|v| v.entry().to_string())
                .collect(),
            Family::Conv(pass) => TMS.iter().map(|&tm| tm_variant(pass.entry(), tm)).collect(),
            Family::Reduce => ReduceKernel::ALL
                .iter()
                .map(|k| k.entry().to_string())
                .collect(),
            Family::Attention => AttentionVariant::ALL
                .iter()
                .map(|v| v.entry("attention_forward").to_string())
                .collect(),
        }
    }

    /// The family a cache key (`<family> <class>`) belongs to.
    fn of_key(key: &str) -> Option<Family> {
        let name = key.split(' ').next()?;
        Family::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// What tuning chose for one family and shape class.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// The variant kept: the fastest of those that matched the reference.
    pub variant: String,
    /// The median time of each variant timed, in microseconds.
    pub median_us: BTreeMap<String, f64>,
    /// The variants passed over, each with the reason (a wrong value, an error).
    pub rejected: BTreeMap<String, String>,
}

/// Counters of what a [`Tuner`] did, for `sinter tune` and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TuneStats {
    /// Keys tuned by running their variants.
    pub tuned: u64,
    /// Lookups answered by a choice already made (in this process or read from the cache file).
    pub hits: u64,
    /// Timed runs made (one per variant that reached timing).
    pub timing_runs: u64,
    /// Time spent tuning, in microseconds.
    pub tuning_us: u64,
}

/// A device's tuning state: whether it tunes, where it keeps its choices, and the choices made.
pub struct Tuner {
    enabled: AtomicBool,
    dir: Mutex<Option<PathBuf>>,
    state: Mutex<State>,
    tuned: AtomicU64,
    hits: AtomicU64,
    timing_runs: AtomicU64,
    tuning_us: AtomicU64,
    /// Every variant timed, in order, with its key (`<key>: <variant>`).
    timed: Mutex<Vec<String>>,
}

#[derive(Default)]
struct State {
    /// Whether the cache file was read for this device's pair.
    loaded: bool,
    /// Choices by key (`<family> <class>`).
    choices: BTreeMap<String, Choice>,
}

impl Tuner {
    /// A tuner, on or off, keeping its choices in `dir` (`None`: in memory only).
    pub(crate) fn new(enabled: bool, dir: Option<PathBuf>) -> Self {
        Self {
            enabled: AtomicBool::new(enabled),
            dir: Mutex::new(dir),
            state: Mutex::default(),
            tuned: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            timing_runs: AtomicU64::new(0),
            tuning_us: AtomicU64::new(0),
            timed: Mutex::default(),
        }
    }

    /// Whether launchers tune and use tuned choices (off: the static rules).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Turns tuning on or off for this device (the library's switch; see also [`NO_TUNE_ENV`]).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Keeps the choices in `dir` from now on (`None`: in memory only), forgetting those held.
    pub fn set_dir(&self, dir: Option<PathBuf>) {
        *lock(&self.dir) = dir;
        *lock(&self.state) = State::default();
    }

    /// What this tuner has done so far.
    pub fn stats(&self) -> TuneStats {
        TuneStats {
            tuned: self.tuned.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            timing_runs: self.timing_runs.load(Ordering::Relaxed),
            tuning_us: self.tuning_us.load(Ordering::Relaxed),
        }
    }

    /// Every variant timed so far, in order, as `<key>: <variant>`.
    pub fn timed_variants(&self) -> Vec<String> {
        lock(&self.timed).clone()
    }

    /// The choices this device holds (made here or read from the cache file), by key.
    pub fn choices(&self) -> BTreeMap<String, Choice> {
        lock(&self.state).choices.clone()
    }

    fn note_timed(&self, key: &str, variant: &str) {
        self.timing_runs.fetch_add(1, Ordering::Relaxed);
        lock(&self.timed).push(format!("{key}: {variant}"));
    }

    /// The variant to run for `key` among `candidates` (the enabled variants that fit the
    /// device): the cached choice, else the fastest right one of `measure`'s, stored. `None`
    /// where none was right: the caller keeps its static rule.
    fn choose(
        &self,
        gpu: &Gpu,
        key: String,
        candidates: &[String],
        measure: impl FnOnce(&mut measure::Timer<'_>) -> measure::Measured,
    ) -> Option<String> {
        let mut state = lock(&self.state);
        if !state.loaded {
            state.loaded = true;
            state.choices = self.load(&gpu.report);
        }
        if !state.choices.contains_key(&key) {
            // Another device (in this process or another) may have tuned the class since this one
            // read the file: take its choice, so devices on one adapter compute alike.
            if let Some(c) = self.load_quietly(&gpu.report).remove(&key) {
                state.choices.insert(key.clone(), c);
            }
        }
        if let Some(c) = state.choices.get(&key) {
            // A choice the canary has since disabled is tuned again among the others.
            if candidates.contains(&c.variant) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Some(c.variant.clone());
            }
        }
        if candidates.len() < 2 {
            return candidates.first().cloned();
        }
        let started = Instant::now();
        let mut timer = measure::Timer {
            tuner: self,
            key: &key,
        };
        let measured = measure(&mut timer);
        let spent = started.elapsed();
        self.tuned.fetch_add(1, Ordering::Relaxed);
        self.tuning_us
            .fetch_add(spent.as_micros() as u64, Ordering::Relaxed);
        for (variant, why) in &measured.rejected {
            log::warn!("tuning {key}: {variant} passed over: {why}");
        }
        // Every family puts its static choice first among the candidates.
        let Some(best) = measured.best(candidates.first().map(String::as_str)) else {
            log::warn!(
                "tuning {key} on {}: no variant matched the reference; using the static rule",
                gpu.report.name
            );
            return None;
        };
        log::info!(
            "tuned {key} in {}: {best} ({:?} µs)",
            fmt_duration(spent),
            measured.median_us
        );
        let choice = Choice {
            variant: best.clone(),
            median_us: measured.median_us,
            rejected: measured.rejected,
        };
        self.store(&gpu.report, &key, &choice);
        state.choices.insert(key, choice);
        Some(best)
    }

    /// This pair's choices from the cache file; a damaged or foreign file costs one warning and
    /// gives none (it is replaced at the next store).
    fn load(&self, report: &AdapterReport) -> BTreeMap<String, Choice> {
        let Some(dir) = lock(&self.dir).clone() else {
            return BTreeMap::new();
        };
        cached_choices(report, &dir).unwrap_or_else(|why| {
            log::warn!(
                "ignoring the tuning cache {}: {why}; kernels are tuned again",
                dir.join(CACHE_FILE).display()
            );
            BTreeMap::new()
        })
    }

    /// [`Tuner::load`] without the warning, which the first load gave.
    fn load_quietly(&self, report: &AdapterReport) -> BTreeMap<String, Choice> {
        let dir = lock(&self.dir).clone();
        dir.and_then(|d| cached_choices(report, &d).ok())
            .unwrap_or_default()
    }

    /// Adds `choice` to the cache file (re-read first, so other pairs and processes' choices are
    /// kept; a damaged file is replaced). A write that fails costs a warning.
    fn store(&self, report: &AdapterReport, key: &str, choice: &Choice) {
        let Some(dir) = lock(&self.dir).clone() else {
            return;
        };
        let file = dir.join(CACHE_FILE);
        let mut pairs = crate::cache_file::read(&file, CACHE_VERSION, true).unwrap_or_default();
        let pair = pairs.entry(pair_key(report)).or_insert_with(|| json!({}));
        if !pair.is_object() {
            *pair = json!({});
        }
        pair[key] = json!({
            "choice": choice.variant,
            "median_us": choice.median_us,
            "rejected": choice.rejected,
        });
        if let Err(e) = crate::cache_file::write(&file, CACHE_VERSION, true, &pairs) {
            log::warn!("could not keep tuning choices in {}: {e}", file.display());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn fmt_duration(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The choices cached in `dir` for the pair of `report` (runs nothing): empty where none are;
/// `Err` with the reason where the file is damaged or foreign.
pub fn cached_choices(
    report: &AdapterReport,
    dir: &Path,
) -> Result<BTreeMap<String, Choice>, String> {
    let pairs = crate::cache_file::read(&dir.join(CACHE_FILE), CACHE_VERSION, true)?;
    let Some(pair) = pairs.get(&pair_key(report)) else {
        return Ok(BTreeMap::new());
    };
    let entries = pair
        .as_object()
        .ok_or("an adapter's entry is not an object")?;
    entries
        .iter()
        .map(|(key, v)| parse_choice(key, v).map(|c| (key.clone(), c)))
        .collect()
}

/// One cached choice, checked: its key names a family and its variant is one of the family's.
fn parse_choice(key: &str, v: &Value) -> Result<Choice, String> {
    let family = Family::of_key(key).ok_or_else(|| format!("unknown kernel family in {key:?}"))?;
    let variant = v["choice"]
        .as_str()
        .ok_or_else(|| format!("{key:?} has no choice"))?;
    if !family.variants().iter().any(|n| n == variant) {
        return Err(format!(
            "{key:?} chose {variant:?}, not a variant of {}",
            family.name()
        ));
    }
    let median_us = v["median_us"]
        .as_object()
        .ok_or_else(|| format!("{key:?} has no timings"))?
        .iter()
        .map(|(k, t)| Some((k.clone(), t.as_f64()?)))
        .collect::<Option<BTreeMap<_, _>>>()
        .ok_or_else(|| format!("{key:?} has a timing that is not a number"))?;
    let rejected = v["rejected"]
        .as_object()
        .ok_or_else(|| format!("{key:?} has no rejected list"))?
        .iter()
        .map(|(k, why)| Some((k.clone(), why.as_str()?.to_string())))
        .collect::<Option<BTreeMap<_, _>>>()
        .ok_or_else(|| format!("{key:?} has a reason that is not text"))?;
    Ok(Choice {
        variant: variant.to_string(),
        median_us,
        rejected,
    })
}

/// `x` rounded up to a power of two: sizes in one class share a choice.
fn bucket(x: usize) -> usize {
    x.max(1).next_power_of_two()
}

/// The shape class of a matrix product: batch, m, n, k bucketed, the transposes, and which
/// operands allow vec4 loads (as the launcher decides it), since that changes v3's and v4's code.
pub fn matmul_class(s: &MatmulShape) -> String {
    let t = |x: bool| if x { 'T' } else { 'N' };
    let a_vec4 = (if s.trans_a { s.m } else { s.k }) % 4 == 0 && s.a_batch_stride % 4 == 0;
    let b_vec4 = (if s.trans_b { s.k } else { s.n }) % 4 == 0 && s.b_batch_stride % 4 == 0;
    let bits = [a_vec4, b_vec4, s.n % 4 == 0, s.k % 4 == 0].map(|b| if b { '4' } else { '1' });
    format!(
        "b{} m{} n{} k{} {}{} v{}",
        bucket(s.batch),
        bucket(s.m),
        bucket(s.n),
        bucket(s.k),
        t(s.trans_a),
        t(s.trans_b),
        bits.iter().collect::<String>()
    )
}

/// The shape class of a convolution: batch, channels and image size bucketed; the kernel,
/// stride, padding and dilation as they are.
pub fn conv_class(s: &Conv2dShape) -> String {
    format!(
        "n{} c{} o{} hw{}x{} k{}x{} s{}x{} p{}x{} d{}x{}",
        bucket(s.n),
        bucket(s.c_in),
        bucket(s.c_out),
        bucket(s.h),
        bucket(s.w),
        s.kh,
        s.kw,
        s.stride[0],
        s.stride[1],
        s.pad[0],
        s.pad[1],
        s.dilation[0],
        s.dilation[1]
    )
}

/// The matrix-product variant to run for `shape` on `gpu`: the tuned one where tuning is on
/// (tuning the shape class now if it is new), else [`MatmulVariant::best_for`].
pub fn matmul_variant(gpu: &Gpu, shape: &MatmulShape) -> MatmulVariant {
    let fallback = MatmulVariant::best_for(gpu);
    let tuner = gpu.tuner();
    if !tuner.enabled() || shape.check().is_err() {
        return fallback;
    }
    let mut candidates: Vec<MatmulVariant> = MatmulVariant::ALL
        .into_iter()
        .filter(|v| v.runs_on(gpu) && !gpu.is_disabled(v.entry()))
        .collect();
    // The static choice first: likely the fastest, it lets hopeless ones go untimed.
    candidates.sort_by_key(|&v| v != fallback);
    let names: Vec<String> = candidates.iter().map(|v| v.entry().to_string()).collect();
    let key = format!("{} {}", Family::Matmul.name(), matmul_class(shape));
    tuner
        .choose(gpu, key, &names, |timer| {
            measure::matmul(gpu, timer, shape, &candidates)
        })
        .and_then(|name| candidates.into_iter().find(|v| v.entry() == name))
        .unwrap_or(fallback)
}

/// The rows per invocation (`TM`) of a convolution `pass` over `shape` on `gpu`: the tuned one
/// where tuning is on (tuning the shape class now if it is new), else the static rule.
pub fn conv_tm(gpu: &Gpu, pass: ConvPass, shape: &Conv2dShape) -> u32 {
    let fallback = static_tm(gpu, pass, shape);
    let tuner = gpu.tuner();
    if !tuner.enabled() || shape.check(pass.entry()).is_err() {
        return fallback;
    }
    let mut candidates: Vec<u32> = TMS
        .into_iter()
        .filter(|&tm| !gpu.is_disabled(&tm_variant(pass.entry(), tm)))
        .collect();
    candidates.sort_by_key(|&tm| tm != fallback);
    let names: Vec<String> = candidates
        .iter()
        .map(|&tm| tm_variant(pass.entry(), tm))
        .collect();
    let key = format!("{} {}", pass.entry(), conv_class(shape));
    tuner
        .choose(gpu, key, &names, |timer| {
            measure::conv(gpu, timer, pass, shape, &candidates)
        })
        .and_then(|name| {
            candidates
                .into_iter()
                .find(|&tm| tm_variant(pass.entry(), tm) == name)
        })
        .unwrap_or(fallback)
}

/// The shape class of a reduction: outer, n and inner bucketed (the op changes little).
pub fn reduce_class(s: &ReduceShape) -> String {
    format!("o{} n{} i{}", bucket(s.outer), bucket(s.n), bucket(s.inner))
}

/// The reduction kernel for `shape` on `gpu`: as tuned where tuning is on (tuning the shape
/// class now if it is new), else the static rule ([`crate::kernels::reduce::static_kernel`]).
pub fn reduce_kernel(gpu: &Gpu, op: ReduceOp, shape: &ReduceShape) -> ReduceKernel {
    let fallback = static_kernel(gpu, shape);
    let tuner = gpu.tuner();
    let ReduceShape { outer, n, inner } = *shape;
    if !tuner.enabled() || outer == 0 || n == 0 || inner == 0 {
        return fallback;
    }
    let mut candidates: Vec<ReduceKernel> = ReduceKernel::ALL
        .into_iter()
        .filter(|k| k.runs_on(gpu) && !gpu.is_disabled(k.entry()))
        .collect();
    candidates.sort_by_key(|&k| k != fallback);
    let names: Vec<String> = candidates.iter().map(|k| k.entry().into()).collect();
    let key = format!("{} {}", Family::Reduce.name(), reduce_class(shape));
    tuner
        .choose(gpu, key, &names, |timer| {
            measure::reduce(gpu, timer, op, shape, &candidates)
        })
        .and_then(|name| candidates.into_iter().find(|k| k.entry() == name))
        .unwrap_or(fallback)
}

/// The shape class of attention: batch·heads and T bucketed, the head size, the mask and
/// whether weights are dropped (each changes the code path).
pub fn attention_class(s: &AttentionShape) -> String {
    format!(
        "bh{} t{} d{} causal{} dropout{}",
        bucket(s.batch * s.heads),
        bucket(s.seq),
        s.head_dim,
        u8::from(s.causal),
        u8::from(s.has_dropout())
    )
}

/// The attention layout for `shape` on `gpu`, for its forward and backward alike: the tuned one
/// where tuning is on (tuning the shape class now if it is new), else
/// [`AttentionVariant::best_for`].
pub fn attention_variant(gpu: &Gpu, shape: &AttentionShape) -> AttentionVariant {
    let fallback = AttentionVariant::best_for(gpu);
    let tuner = gpu.tuner();
    if !tuner.enabled() || shape.check().is_err() {
        return fallback;
    }
    let name = |v: &AttentionVariant| v.entry("attention_forward").to_string();
    let mut candidates: Vec<AttentionVariant> = AttentionVariant::ALL
        .into_iter()
        .filter(|v| v.runs_on(gpu) && !gpu.is_disabled(&name(v)))
        .collect();
    candidates.sort_by_key(|&v| v != fallback);
    let names: Vec<String> = candidates.iter().map(name).collect();
    let key = format!("{} {}", Family::Attention.name(), attention_class(shape));
    tuner
        .choose(gpu, key, &names, |timer| {
            attention::attention(gpu, timer, shape, &candidates)
        })
        .and_then(|chosen| candidates.into_iter().find(|v| name(v) == chosen))
        .unwrap_or(fallback)
}

/// Tunes, one after another, every tunable kernel among `kernels` whose shape class has no
/// choice yet (a no-op where tuning is off), so that preparing them afterwards only looks up.
/// Returns each tunable kernel's key and the variant it runs, in order, without repeats.
pub fn tune_kernels<'a>(
    gpu: &Gpu,
    kernels: impl IntoIterator<Item = &'a Kernel>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut note = |key: String, variant: String| {
        if !out.iter().any(|(k, _)| *k == key) {
            out.push((key, variant));
        }
    };
    for kernel in kernels {
        match kernel {
            Kernel::MatMul { shape, .. } => {
                let v = matmul_variant(gpu, shape);
                note(
                    format!("matmul {}", matmul_class(shape)),
                    v.entry().to_string(),
                );
            }
            Kernel::Conv2d { shape, .. } => conv_note(gpu, ConvPass::Forward, shape, &mut note),
            Kernel::Conv2dGradInput(shape) => conv_note(gpu, ConvPass::GradInput, shape, &mut note),
            Kernel::Conv2dGradWeight(shape) => {
                conv_note(gpu, ConvPass::GradWeight, shape, &mut note)
            }
            Kernel::Reduce { op, shape } => {
                let kernel = reduce_kernel(gpu, *op, shape);
                note(
                    format!("reduce {}", reduce_class(shape)),
                    kernel.entry().to_string(),
                );
            }
            Kernel::Attention(shape) | Kernel::AttentionGrad(shape) => {
                let v = attention_variant(gpu, shape);
                note(
                    format!("attention {}", attention_class(shape)),
                    v.entry("attention_forward").to_string(),
                );
            }
            _ => {}
        }
    }
    out
}

fn conv_note(
    gpu: &Gpu,
    pass: ConvPass,
    shape: &Conv2dShape,
    note: &mut impl FnMut(String, String),
) {
    let tm = conv_tm(gpu, pass, shape);
    note(
        format!("{} {}", pass.entry(), conv_class(shape)),
        tm_variant(pass.entry(), tm),
    );
}
