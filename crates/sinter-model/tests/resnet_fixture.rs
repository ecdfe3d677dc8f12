//! A tiny CIFAR ResNet against PyTorch (tests/fixtures/resnet-tiny, made by scripts/resnet_fixture.py):
//! one training step's logits, loss, gradients, AdamW update and running statistics, CPU and adapter.

use serde_json::Value;
use sinter_model::checkpoint::{load_safetensors, NamedTensor};
use sinter_model::nn::{Mode, Sequential};
use sinter_model::optim::{DecayOn, Optimizer, OptimizerKind, Schedule};
use sinter_model::resnet::resnet;
use sinter_model::train::ImageClassifier;
use sinter_model::{
    backward, Backend, Feeds, GraphBuilder, Init, TrainConfig, Trainer, VarKind, VarStore,
};
use sinter_ops::optim::AdamConfig;
use sinter_ops::DeviceChoice;
use std::path::{Path, PathBuf};

fn fixture(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/resnet-tiny")
        .join(file)
}

/// The fixture: PyTorch ran the step in float64 from the f32 weights, so its values carry one f32
/// rounding (when stored) and no other noise.
struct Fixture {
    depth: usize,
    image: [usize; 3],
    classes: usize,
    images: Vec<f32>,
    labels: Vec<f32>,
    logits: Vec<f32>,
    loss: f64,
    adamw: Value,
    /// The state_dict before the step (PyTorch's names; num_batches_tracked read from int64).
    before: Vec<NamedTensor>,
    grads: Vec<NamedTensor>,
    /// The state_dict after the step: parameters after AdamW, running statistics updated.
    after: Vec<NamedTensor>,
}

fn load() -> Fixture {
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    let exp: Value = serde_json::from_str(&text).unwrap();
    let floats = |v: &Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let usize_of = |v: &Value| v.as_u64().unwrap() as usize;
    let image = exp["image"].as_array().unwrap();
    let tensors = |f: &str| {
        let (mut t, _) = load_safetensors(fixture(f)).unwrap();
        t.sort_by(|a, b| a.name.cmp(&b.name));
        t
    };
    Fixture {
        depth: usize_of(&exp["depth"]),
        image: [
            usize_of(&image[0]),
            usize_of(&image[1]),
            usize_of(&image[2]),
        ],
        classes: usize_of(&exp["classes"]),
        images: floats(&exp["images"]),
        labels: floats(&exp["labels"]),
        logits: floats(&exp["logits"]),
        loss: exp["loss"].as_f64().unwrap(),
        adamw: exp["adamw"].clone(),
        before: tensors("model.safetensors"),
        grads: tensors("grads.safetensors"),
        after: tensors("after_adamw.safetensors"),
    }
}

impl Fixture {
    fn batch(&self) -> usize {
        self.labels.len()
    }

    /// sinter's ResNet of the fixture's sizes (its own initial values, not yet the fixture's).
    fn net(&self) -> (Sequential, VarStore) {
        let mut store = VarStore::new();
        let net = resnet(
            &mut store,
            self.depth,
            self.image[0],
            self.classes,
            &mut Init::new(0),
        )
        .unwrap();
        (net, store)
    }
}

/// The fixture's tensor `name` in `list` (sorted by name).
fn named<'a>(list: &'a [NamedTensor], name: &str) -> &'a NamedTensor {
    let k = list
        .binary_search_by(|t| t.name.as_str().cmp(name))
        .unwrap_or_else(|_| panic!("the fixture has no {name}"));
    &list[k]
}

/// The largest |value| of a tensor.
fn largest(x: &[f32]) -> f64 {
    x.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs()))
}

// Tolerances: sinter computes in f32, the reference is f64 rounded to f32. The script prints how
// far PyTorch's own f32 step lands from it: logits 2.9e-7, loss 1.1e-8, gradients 2.3e-7
// (8.6e-7 of each tensor's largest), running statistics 1.4e-7. The bounds are 10–15× that (the
// loss's: a few f32 ulps of its 2.3).

/// Logits of size ~1 after seven convolutions deep (up to 576 terms each) and seven batch norms.
const LOGIT_ATOL: f64 = 4e-6;
/// The mean cross-entropy (~2.3) of those logits: a few roundings of 2.4e-7 on top of theirs.
const LOSS_ATOL: f64 = 2e-6;
/// A gradient's rounding scales with its tensor's terms rather than with the element (sums over
/// the batch's 4·H·W positions, up to 576 values), hence a bound relative to the tensor's
/// largest gradient: |Δ| ≤ GRAD_OF_MAX·max|g| + GRAD_RTOL·|g|.
const GRAD_OF_MAX: f64 = 1e-5;
const GRAD_RTOL: f64 = 1e-5;
/// A running mean or variance (of size ≤ ~3): 0.9·old + 0.1·(a batch mean or unbiased variance
/// over 36 to 576 values, each a few roundings from its convolution).
const RUNNING_ATOL: f64 = 2e-6;
const RUNNING_RTOL: f64 = 2e-6;
/// A parameter after the step: the rounding of p·(1 − lr·wd) and of the update (a few ulps of
/// |p| ≤ ~2), plus what the gradient's tolerance δ can move AdamW's first update
/// lr·g/(|g| + ε) (m̂ = g and √v̂ = |g| at step 1): lr·max over g' = g ± δ of |u(g') − u(g)|,
/// which grows to the whole step, 2·lr, only where |g| ≲ δ.
const PARAM_ATOL: f64 = 1e-7;
const PARAM_RTOL: f64 = 5e-7;

fn grad_tolerance(g: f64, max: f64) -> f64 {
    GRAD_OF_MAX * max + GRAD_RTOL * g.abs()
}

/// How far `g` ± `delta` can move AdamW's first step g/(|g| + ε), times `lr`.
fn first_step_tolerance(g: f64, delta: f64, lr: f64, eps: f64) -> f64 {
    let u = |x: f64| x / (x.abs() + eps);
    lr * (u(g + delta) - u(g)).abs().max((u(g - delta) - u(g)).abs())
}

/// Checks `got` against `want` element by element within `tol(k)`; returns the largest |Δ|.
fn check_close(what: &str, got: &[f32], want: &[f32], tol: impl Fn(usize) -> f64) -> f64 {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} values, want {}",
        got.len(),
        want.len()
    );
    let mut worst = 0f64;
    for (k, (&a, &b)) in got.iter().zip(want).enumerate() {
        let d = (f64::from(a) - f64::from(b)).abs();
        assert!(
            d <= tol(k),
            "{what}[{k}]: sinter {a:e}, PyTorch {b:e}: |Δ| {d:e} > {:e}",
            tol(k)
        );
        worst = worst.max(d);
    }
    worst
}

/// Compares the running statistics and counts of `got` (a state_dict) with the fixture's after
/// the step; returns the largest |Δ| of the statistics.
fn running_statistics_match(what: &str, fx: &Fixture, got: &[(String, Vec<f32>)]) -> f64 {
    let mut worst = 0f64;
    let mut seen = 0;
    for (name, data) in got {
        let want = &named(&fx.after, name).data;
        if name.ends_with("running_mean") || name.ends_with("running_var") {
            let before = &named(&fx.before, name).data;
            // The statistics moved: the comparison is not of unchanged values.
            let moved = data
                .iter()
                .zip(before)
                .fold(0f64, |m, (a, b)| m.max(f64::from(a - b).abs()));
            assert!(moved > 1e-3, "{what}: {name} did not move ({moved:e})");
            let d = check_close(&format!("{what}: {name}"), data, want, |k| {
                RUNNING_ATOL + RUNNING_RTOL * f64::from(want[k]).abs()
            });
            worst = worst.max(d);
            seen += 1;
        } else if name.ends_with("num_batches_tracked") {
            assert_eq!(data, &[1.0], "{what}: {name}");
            assert_eq!(want, &[1.0], "the fixture's {name}");
            seen += 1;
        }
    }
    // conv1's and every block's two batch norms, and the two projections': 3 buffers each.
    assert_eq!(seen, 3 * (1 + 2 * 3 + 2), "{what}: batch-norm buffers");
    worst
}

/// The test adapter (lavapipe in CI), on a device of its own; None (with a warning) only when
/// there is none and SINTER_REQUIRE_ADAPTER is not set, as every shader test does.
#[cfg(feature = "gpu")]
fn adapter() -> Option<Backend> {
    use sinter_device::{pick_adapter, DeviceChoice as Choice, Gpu};
    sinter_device::testing::test_gpu()?;
    let choice = match Choice::from_env() {
        Ok(c @ (Choice::Gpu | Choice::Software | Choice::One { .. })) => c,
        _ => Choice::Auto,
    };
    let adapter = pick_adapter(choice)
        .ok()
        .flatten()
        .or_else(|| pick_adapter(Choice::Software).ok().flatten())
        .expect("test_gpu found an adapter");
    let gpu = Gpu::new(adapter).expect("device opens");
    // The static variant choice, so the kernels do not depend on timings (see tests/common).
    gpu.tuner().set_enabled(false);
    eprintln!("adapter: {}", gpu.report.name);
    Some(Backend::Gpu(Box::new(
        sinter_model::backend::GpuBackend::new(gpu).expect("backend"),
    )))
}

fn cpu() -> Backend {
    Backend::open(DeviceChoice::Cpu).unwrap().0
}

/// The training forward and `backward` as a program on `backend`, the fixture's state_dict
/// loaded by name: logits, loss, every gradient, and the running statistics its batch-norm
/// updates leave.
fn forward_and_gradients_match(mut backend: Backend, what: &str) {
    let fx = load();
    let (net, mut store) = fx.net();
    // Every variable of sinter's ResNet is in PyTorch's state_dict under the same name and
    // shape, and the state_dict holds nothing else.
    let mut ours: Vec<(String, Vec<usize>)> = store
        .vars
        .iter()
        .map(|v| (v.name.clone(), v.shape.clone()))
        .collect();
    ours.sort();
    let theirs: Vec<(String, Vec<usize>)> = fx
        .before
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    assert_eq!(ours, theirs, "sinter's variables and PyTorch's state_dict");
    for t in &fx.before {
        let id = store.find(&t.name).unwrap();
        store.vars[id.0].init = t.data.clone();
    }
    backend.load_vars(&store).unwrap();

    let g = GraphBuilder::new();
    let [c, h, w] = fx.image;
    let x = g.input("images", &[fx.batch(), c, h, w]);
    let labels = g.input("labels", &[fx.batch()]);
    let logits = net.forward(&store, &x, Mode::Train).unwrap();
    let loss = logits.cross_entropy(&labels).unwrap();
    let grads = backward(&loss, &[]).unwrap();
    let params = store.ids(VarKind::Param);
    assert_eq!(params.len(), fx.grads.len(), "one gradient per parameter");
    let mut outputs = vec![logits.id, loss.id];
    outputs.extend(
        params
            .iter()
            .map(|&id| grads.of(g.var_leaf(id).unwrap()).unwrap()),
    );
    let mut p = backend.compile(&g.finish(), &outputs).unwrap();
    let feeds: Vec<&[f32]> = p
        .plan()
        .inputs
        .iter()
        .map(|&i| match &p.plan().nodes[i].op {
            sinter_model::Op::Input { name } if name == "images" => fx.images.as_slice(),
            _ => fx.labels.as_slice(),
        })
        .collect();
    let out = backend.run(&mut p, &feeds, &Default::default()).unwrap();

    let dlogit = check_close(&format!("{what}: logits"), &out[0], &fx.logits, |_| {
        LOGIT_ATOL
    });
    let dl = (f64::from(out[1][0]) - fx.loss).abs();
    assert!(
        dl <= LOSS_ATOL,
        "{what}: loss {} vs PyTorch {}",
        out[1][0],
        fx.loss
    );
    let (mut worst, mut worst_rel) = (0f64, 0f64);
    for (slot, &id) in params.iter().enumerate() {
        let name = &store.get(id).name;
        let want = &named(&fx.grads, name).data;
        let max = largest(want);
        let d = check_close(
            &format!("{what}: d loss / d {name}"),
            &out[slot + 2],
            want,
            |k| grad_tolerance(f64::from(want[k]), max),
        );
        worst = worst.max(d);
        worst_rel = worst_rel.max(d / max);
    }
    // The program's batch-norm updates ran: the buffers hold the statistics after the forward.
    let buffers: Vec<(String, Vec<f32>)> = store
        .ids(VarKind::Buffer)
        .into_iter()
        .map(|id| (store.get(id).name.clone(), backend.read_var(id).unwrap()))
        .collect();
    let drun = running_statistics_match(what, &fx, &buffers);
    eprintln!(
        "{what}: largest |Δ|: logits {dlogit:.2e}, loss {dl:.2e}, gradients {worst:.2e} \
         ({worst_rel:.2e} of their tensor's largest), running statistics {drun:.2e}"
    );
}

#[test]
fn logits_loss_gradients_and_running_statistics_match_pytorch_on_the_cpu() {
    forward_and_gradients_match(cpu(), "cpu");
}

#[cfg(feature = "gpu")]
#[test]
fn logits_loss_gradients_and_running_statistics_match_pytorch_on_the_adapter() {
    let Some(backend) = adapter() else { return };
    forward_and_gradients_match(backend, "adapter");
}

/// One step of the generic trainer with the image-classifier model and AdamW as the fixture's
/// settings (constant schedule, whose factor at step 0 is 1; no clipping; decay on matrices):
/// the state_dict loaded with `set_params`, then the loss and the whole state_dict after it.
fn one_adamw_step_matches(backend: Backend, what: &str) {
    let fx = load();
    let (net, store) = fx.net();
    let a = &fx.adamw;
    let (lr, eps) = (a["lr"].as_f64().unwrap(), a["eps"].as_f64().unwrap());
    // PyTorch's decay group (convolution and fc weights) is what sinter decays on matrices.
    let decayed: Vec<&str> = a["decayed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let ours: Vec<&str> = store
        .ids(VarKind::Param)
        .into_iter()
        .filter(|&id| store.get(id).decay)
        .map(|id| store.get(id).name.as_str())
        .collect();
    assert_eq!(ours, decayed, "the parameters weight decay applies to");
    let optimizer = Optimizer {
        kind: OptimizerKind::Adam(AdamConfig {
            beta1: a["betas"][0].as_f64().unwrap() as f32,
            beta2: a["betas"][1].as_f64().unwrap() as f32,
            eps: eps as f32,
            weight_decay: a["weight_decay"].as_f64().unwrap() as f32,
            decoupled: true,
        }),
        lr,
        schedule: Schedule::Constant,
        clip_norm: None,
        decay_on: DecayOn::Matrices,
    };
    assert_eq!(
        optimizer.scalars(0).lr,
        lr,
        "the first step's learning rate"
    );
    let model = ImageClassifier {
        net,
        image: fx.image,
    };
    let config = TrainConfig::new(fx.batch());
    let mut t = Trainer::new(model, store, backend, optimizer, config).unwrap();
    t.set_params(&fx.before, &fixture("model.safetensors"))
        .unwrap();
    let feeds = Feeds::new()
        .with("images", &fx.images)
        .with("labels", &fx.labels);
    let step = t.step(&feeds).unwrap();
    let dl = (f64::from(step.loss) - fx.loss).abs();
    assert!(
        dl <= LOSS_ATOL,
        "{what}: loss {} vs PyTorch {}",
        step.loss,
        fx.loss
    );

    let state = t.params().unwrap();
    assert_eq!(state.len(), fx.after.len(), "the state_dict's tensors");
    let (mut worst, mut worst_fixed, mut loose, mut total) = (0f64, 0f64, 0, 0);
    let mut buffers = Vec::new();
    for s in &state {
        let id = t.store.find(&s.name).unwrap();
        if t.store.get(id).kind != VarKind::Param {
            buffers.push((s.name.clone(), s.data.clone()));
            continue;
        }
        let want = &named(&fx.after, &s.name).data;
        let grad = &named(&fx.grads, &s.name).data;
        let before = &named(&fx.before, &s.name).data;
        let max = largest(grad);
        let step_tol = |k: usize| {
            let g = f64::from(grad[k]);
            first_step_tolerance(g, grad_tolerance(g, max), lr, eps)
        };
        let d = check_close(
            &format!("{what}: {} after AdamW", s.name),
            &s.data,
            want,
            |k| PARAM_ATOL + PARAM_RTOL * f64::from(want[k]).abs() + step_tol(k),
        );
        worst = worst.max(d);
        for (k, (&x, &w)) in s.data.iter().zip(want.iter()).enumerate() {
            // Over the values whose step the gradient's tolerance fixes; those it leaves free.
            if step_tol(k) < 1e-7 {
                worst_fixed = worst_fixed.max(f64::from(x - w).abs());
            }
            if step_tol(k) > 0.1 * lr {
                loose += 1;
            }
        }
        total += want.len();
        // The step moved every parameter by about lr: not a comparison of unchanged values.
        let moved = s
            .data
            .iter()
            .zip(before)
            .fold(0f64, |m, (x, y)| m.max(f64::from(x - y).abs()));
        assert!(
            moved > 0.5 * lr,
            "{what}: {} barely moved ({moved:e})",
            s.name
        );
    }
    assert!(
        loose * 100 < total,
        "{what}: {loose} of {total} values barely checked"
    );
    let drun = running_statistics_match(what, &fx, &buffers);
    eprintln!(
        "{what}: loss |Δ| {dl:.2e}; parameters after AdamW: largest |Δ| {worst_fixed:.2e} where \
         the gradient fixes the step, {worst:.2e} over all ({loose} of {total} values have a \
         gradient so close to 0 that their bound exceeds lr/10); running statistics {drun:.2e}"
    );
}

#[test]
fn one_adamw_step_matches_pytorch_on_the_cpu() {
    one_adamw_step_matches(cpu(), "cpu");
}

#[cfg(feature = "gpu")]
#[test]
fn one_adamw_step_matches_pytorch_on_the_adapter() {
    let Some(backend) = adapter() else { return };
    one_adamw_step_matches(backend, "adapter");
}
