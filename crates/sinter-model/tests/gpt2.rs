//! GPT-2 against Hugging Face `transformers` (fixtures by scripts/gpt2_fixture.py): logits, loss, gradients
//! and one AdamW step match (CPU and adapter), folders round-trip bit-exactly, errors name file and tensor.

use serde_json::Value;
use sinter_model::checkpoint::NamedTensor;
use sinter_model::data::Tokenizer;
use sinter_model::gpt2::hf::{self, parameter_shapes};
use sinter_model::gpt2::{Gpt2, Gpt2Config, Gpt2Sampler};
use sinter_model::nn::Mode;
use sinter_model::{Backend, GraphBuilder, Init, Model, VarStore};
use sinter_ops::DeviceChoice;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sinter-gpt2-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("gpt2-tiny/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn flat(v: &Value) -> Vec<f32> {
    match v {
        Value::Array(a) => a.iter().flat_map(flat).collect(),
        v => vec![v.as_f64().unwrap() as f32],
    }
}

/// A model of `config` on the CPU backend with `tensors` as its parameters.
fn load(config: Gpt2Config, tensors: &[NamedTensor], context: usize) -> (Gpt2, VarStore, Backend) {
    let mut store = VarStore::new();
    let model = Gpt2::new(&mut store, config, context, &mut Init::new(0)).unwrap();
    for t in tensors {
        let id = store.find(&t.name).unwrap();
        store.vars[id.0].init = t.data.clone();
    }
    let (mut backend, _) = Backend::open(DeviceChoice::Cpu).unwrap();
    backend.load_vars(&store).unwrap();
    (model, store, backend)
}

#[test]
fn the_transformers_fixture_gives_its_logits_and_loss_on_the_cpu() {
    let (config, tensors) = hf::read_dir(&fixture("gpt2-tiny")).unwrap();
    assert_eq!((config.n_layer, config.n_head, config.n_embd), (2, 2, 32));
    assert_eq!((config.n_positions, config.vocab_size), (16, 101));
    let exp = expected();
    let ids = flat(&exp["ids"]);
    let targets = flat(&exp["targets"]);
    let want = flat(&exp["logits"]);
    let (model, store, mut backend) = load(config, &tensors, 16);

    let g = GraphBuilder::new();
    let logits = model.record_logits(&store, &g, 2).unwrap();
    let mut p = backend.compile(&g.finish(), &[logits.id]).unwrap();
    let got = backend
        .run(&mut p, &[&ids], &Default::default())
        .unwrap()
        .remove(0);
    assert_eq!(got.len(), want.len());
    // transformers computes in f32 too (and the fixture rounds to 7 decimals): the logits agree
    // to 2e-5 + 1e-4·|logit|.
    let mut worst = 0f32;
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        let d = (a - b).abs();
        worst = worst.max(d);
        assert!(
            d <= 2e-5 + 1e-4 * b.abs(),
            "logit {i}: sinter {a}, transformers {b}"
        );
    }
    eprintln!("largest logit difference from transformers: {worst:e}");

    let g = GraphBuilder::new();
    let out = model.forward(&store, &g, 2, Mode::Eval).unwrap();
    let mut p = backend.compile(&g.finish(), &[out.loss.id]).unwrap();
    let feeds: Vec<&[f32]> = {
        // The program's inputs in its feed order, by name.
        let plan = p.plan();
        plan.inputs
            .iter()
            .map(|&i| match &plan.nodes[i].op {
                sinter_model::Op::Input { name } if name == "ids" => ids.as_slice(),
                _ => targets.as_slice(),
            })
            .collect()
    };
    let loss = backend.run(&mut p, &feeds, &Default::default()).unwrap()[0][0];
    let want_loss = exp["loss"].as_f64().unwrap() as f32;
    assert!(
        (loss - want_loss).abs() < 1e-5,
        "loss: sinter {loss}, transformers {want_loss}"
    );

    // A shorter context uses the first rows of wpe: the first 8 positions' logits are the same.
    let (short, store8, mut backend8) = load(config, &tensors, 8);
    let mut sampler = Gpt2Sampler::compile(&short, &store8, &backend8).unwrap();
    let first: Vec<u32> = ids[..8].iter().map(|&v| v as u32).collect();
    let got8 = sampler.logits(&short, &mut backend8, &first).unwrap();
    for (a, b) in got8.iter().zip(&want[..8 * 101]) {
        assert!(
            (a - b).abs() <= 2e-5 + 1e-4 * b.abs(),
            "context 8: {a} vs {b}"
        );
    }
}

#[test]
fn a_folder_round_trips_bit_exactly_and_loads_without_the_prefix() {
    let (config, tensors) = hf::read_dir(&fixture("gpt2-tiny")).unwrap();
    let dir = scratch("round-trip");
    hf::write_dir(&dir, &config, &tensors).unwrap();
    let (config2, tensors2) = hf::read_dir(&dir).unwrap();
    assert_eq!(config2, config);
    assert_eq!(tensors2.len(), tensors.len());
    for (a, b) in tensors.iter().zip(&tensors2) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.shape, b.shape);
        let bits = |t: &NamedTensor| t.data.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(a), bits(b), "{}", a.name);
    }
    // The fixture's file byte for byte: sinter writes what it read.
    let st = std::fs::read(dir.join("model.safetensors")).unwrap();
    let names = safetensors::SafeTensors::deserialize(&st)
        .unwrap()
        .names()
        .len();
    assert_eq!(names, parameter_shapes(&config).len(), "no lm_head.weight");

    // The hub's layout: names without `transformer.`, the causal-mask buffers, a tied head.
    let mut views: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|t| {
            let bytes = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (
                t.name["transformer.".len()..].to_string(),
                t.shape.clone(),
                bytes,
            )
        })
        .collect();
    views.push(("h.0.attn.bias".into(), vec![1, 1, 16, 16], vec![0; 4 * 256]));
    views.push(("h.1.attn.masked_bias".into(), vec![], vec![0; 4]));
    let wte = views[0].2.clone();
    views.push(("lm_head.weight".into(), vec![101, 32], wte));
    let hub = scratch("hub");
    std::fs::copy(fixture("gpt2-tiny/config.json"), hub.join("config.json")).unwrap();
    let write = |views: &[(String, Vec<usize>, Vec<u8>)]| {
        let tv: Vec<(String, safetensors::tensor::TensorView)> = views
            .iter()
            .map(|(n, s, b)| {
                let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap();
                (n.clone(), v)
            })
            .collect();
        let bytes = safetensors::serialize(tv, None).unwrap();
        std::fs::write(hub.join("model.safetensors"), bytes).unwrap();
    };
    write(&views);
    let (_, hub_tensors) = hf::read_dir(&hub).unwrap();
    assert_eq!(hub_tensors, tensors);

    // Errors name the file and the tensor.
    let err = |views: &[(String, Vec<usize>, Vec<u8>)]| {
        write(views);
        hf::read_dir(&hub).unwrap_err().to_string()
    };
    let mut untied = views.clone();
    untied.last_mut().unwrap().2[0] ^= 1;
    let e = err(&untied);
    assert!(
        e.contains("model.safetensors") && e.contains("lm_head.weight") && e.contains("ties"),
        "{e}"
    );
    let e = err(&views[1..]);
    assert!(
        e.contains("has no tensor transformer.wte.weight (nor wte.weight)"),
        "{e}"
    );
    let mut wrong = views.clone();
    wrong[2] = ("h.0.ln_1.weight".into(), vec![16], vec![0; 64]);
    let e = err(&wrong);
    assert!(
        e.contains("h.0.ln_1.weight is [16]") && e.contains("n_embd 32") && e.contains("[32]"),
        "{e}"
    );
    let mut extra = views.clone();
    extra.push(("h.2.ln_1.weight".into(), vec![32], vec![0; 128]));
    let e = err(&extra);
    assert!(
        e.contains("h.2.ln_1.weight") && e.contains("2 layers"),
        "{e}"
    );
    std::fs::write(hub.join("config.json"), "{\"model_type\": \"bert\"}").unwrap();
    let e = hf::read_dir(&hub).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("\"bert\""), "{e}");
    std::fs::remove_file(hub.join("config.json")).unwrap();
    let e = hf::read_dir(&hub).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");
    let _ = std::fs::remove_dir_all(&hub);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_tiny_config_round_trips_through_write_and_read() {
    let config = Gpt2Config {
        n_layer: 2,
        n_head: 2,
        n_embd: 32,
        n_positions: 16,
        vocab_size: 101,
        layer_norm_epsilon: 1e-5,
        activation: sinter_model::gpt2::Activation::GeluTanh,
    };
    let mut store = VarStore::new();
    Gpt2::new(&mut store, config, 16, &mut Init::new(7)).unwrap();
    let tensors: Vec<NamedTensor> = store
        .vars
        .iter()
        .map(|v| NamedTensor::new(v.name.clone(), v.shape.clone(), v.init.clone()))
        .collect();
    let dir = scratch("tiny");
    hf::write_dir(&dir, &config, &tensors).unwrap();
    let (c, t) = hf::read_dir(&dir).unwrap();
    assert_eq!(c, config);
    assert_eq!(t, tensors);
    // A tensor list that is not the model's is refused before anything is written.
    let e = hf::write_dir(&dir.join("sub"), &config, &tensors[1..])
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing transformer.wte.weight"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_byte_level_bpe_fixture_encodes_as_the_tokenizers_package_does() {
    let dir = fixture("tokenizer");
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    let exp: Value = serde_json::from_str(&text).unwrap();
    let tok = Tokenizer::load(dir.join("tokenizer.json")).unwrap();
    assert_eq!(tok.vocab_size() as u64, exp["vocab_size"].as_u64().unwrap());
    let sample = exp["text"].as_str().unwrap();
    let ids: Vec<u32> = exp["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(tok.encode(sample).unwrap(), ids);
    assert_eq!(tok.decode(&ids).unwrap(), sample);
    // Written out and read back, the same tokenizer.
    let again = Tokenizer::from_json(tok.to_json(), Path::new("copy.json")).unwrap();
    assert_eq!(again.encode(sample).unwrap(), ids);
}

/// The head is `wte` used a second time: its gradient must be the embedding's plus the head's.
/// Central finite differences in f64 on the CPU backend, on rows of `wte` the ids use (both
/// paths) and rows they do not (the head's path alone), and on every other parameter.
#[test]
fn the_tied_embedding_gets_both_gradients_and_every_parameter_its_own() {
    use rand::{Rng, SeedableRng};
    use sinter_model::backend::CpuBackend;
    use sinter_model::{backward, Plan, StepScalars, VarKind};
    let config = Gpt2Config {
        n_layer: 1,
        n_head: 2,
        n_embd: 8,
        n_positions: 6,
        vocab_size: 11,
        layer_norm_epsilon: 1e-5,
        activation: sinter_model::gpt2::Activation::GeluTanh,
    };
    let mut store = VarStore::new();
    let model = Gpt2::new(&mut store, config, 4, &mut Init::new(5)).unwrap();
    // Larger weights than GPT-2's 0.02, so that every path carries a visible gradient.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    for v in &mut store.vars {
        for x in &mut v.init {
            *x = rng.random_range(-0.5..0.5);
        }
    }
    let g = GraphBuilder::new();
    let loss = model.forward(&store, &g, 2, Mode::Train).unwrap().loss;
    let grads = backward(&loss, &[]).unwrap();
    let params = store.ids(VarKind::Param);
    let mut outputs = vec![loss.id];
    outputs.extend(
        params
            .iter()
            .map(|&id| grads.of(g.var_leaf(id).unwrap()).unwrap()),
    );
    let plan = Plan::new(&g.finish(), &outputs).unwrap();
    // Ids 0..=5 only: rows 6..10 of wte reach the loss through the head alone.
    let ids: Vec<f64> = [0, 1, 2, 3, 4, 5, 1, 0].map(f64::from).to_vec();
    let targets: Vec<f64> = [1, 7, 9, 10, 2, 6, 3, 8].map(f64::from).to_vec();
    let feeds: Vec<&[f64]> = plan
        .inputs
        .iter()
        .map(|&i| match &plan.nodes[i].op {
            sinter_model::Op::Input { name } if name == "ids" => ids.as_slice(),
            _ => targets.as_slice(),
        })
        .collect();
    let mut cpu = CpuBackend::<f64>::new();
    cpu.load_vars(&store);
    let mut prog = cpu.compile(plan);
    let none = StepScalars::default();
    let analytic = cpu.run_f64(&mut prog, &feeds, &none).unwrap();
    let h = 1e-6;
    for (slot, &id) in params.iter().enumerate() {
        let info = store.get(id);
        let probes: Vec<usize> = if info.name.ends_with("wte.weight") {
            // Row 1 (embedded twice and a target), row 5 (embedded once), rows 7 and 10 (head only).
            [8 + 3, 40 + 2, 56 + 5, 80 + 7].to_vec()
        } else {
            (0..3).map(|_| rng.random_range(0..info.numel())).collect()
        };
        for j in probes {
            let orig = cpu.vars[id.0][j];
            cpu.vars[id.0][j] = orig + h;
            let plus = cpu.run_f64(&mut prog, &feeds, &none).unwrap()[0][0];
            cpu.vars[id.0][j] = orig - h;
            let minus = cpu.run_f64(&mut prog, &feeds, &none).unwrap()[0][0];
            cpu.vars[id.0][j] = orig;
            let numeric = (plus - minus) / (2.0 * h);
            let got = analytic[slot + 1][j];
            assert!(
                (got - numeric).abs() <= 1e-6 + 1e-6 * numeric.abs(),
                "d loss / d {}[{j}]: {got} by autodiff, {numeric} by finite differences",
                info.name
            );
        }
    }
}

// ---- One training step against PyTorch: grads.safetensors and after_adamw.safetensors ----------

/// The fixture's second part (see scripts/gpt2_fixture.py): PyTorch ran the step in float64 from
/// the f32 weights, so its values carry one f32 rounding (when stored) and no other noise.
struct Step {
    ids: Vec<f32>,
    targets: Vec<f32>,
    loss: f64,
    grads: Vec<NamedTensor>,
    after: Vec<NamedTensor>,
    adamw: Value,
}

fn step_fixture() -> Step {
    use sinter_model::checkpoint::load_safetensors;
    let exp = expected();
    let load = |f: &str| {
        let (mut t, _) = load_safetensors(fixture("gpt2-tiny").join(f)).unwrap();
        t.sort_by(|a, b| a.name.cmp(&b.name));
        t
    };
    Step {
        ids: flat(&exp["ids"]),
        targets: flat(&exp["targets"]),
        loss: exp["loss_f64"].as_f64().unwrap(),
        grads: load("grads.safetensors"),
        after: load("after_adamw.safetensors"),
        adamw: exp["adamw"].clone(),
    }
}

/// The fixture's tensor `name` in `list` (sorted by name).
fn named<'a>(list: &'a [NamedTensor], name: &str) -> &'a NamedTensor {
    let k = list
        .binary_search_by(|t| t.name.as_str().cmp(name))
        .unwrap_or_else(|_| panic!("the fixture has no {name}"));
    &list[k]
}

/// The loss in f32 against PyTorch's f64: ~10 roundings of values of size ~5 (2.4e-7 each) in the
/// softmax and the mean; PyTorch's own f32 run is 8e-8 away.
const LOSS_ATOL: f64 = 2e-6;
/// Gradients in f32 against the f64 reference: PyTorch's own f32 run is within 8.4e-8 absolute,
/// 8.1e-7 of each tensor's largest gradient (the script prints both). A gradient is a sum over
/// the 32 positions and up to 128 features, its rounding scaling with the tensor's size rather
/// than the element's, so the bound is relative to the tensor's largest gradient:
/// |Δ| ≤ GRAD_OF_MAX·max|g| + GRAD_RTOL·|g|, 12× what PyTorch's f32 shows.
const GRAD_OF_MAX: f64 = 1e-5;
const GRAD_RTOL: f64 = 1e-5;
/// A parameter after the step: the rounding of p·(1 − lr·wd) and of the update (a few ulps of
/// |p| ≤ 1.3), plus what the gradient's own tolerance δ can move AdamW's first update
/// lr·g/(|g| + ε) (m̂ = g, √v̂ = |g| at step 1): lr·max over g' = g ± δ of |u(g') − u(g)|. Where
/// |g| ≲ δ (the key biases' gradients are exactly 0: softmax ignores a shift of every score) the
/// step's direction is rounding noise and the bound grows to the whole update, 2·lr.
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

/// The fixture's model in a store, its parameters the fixture's.
fn fixture_model() -> (Gpt2, VarStore) {
    let (config, tensors) = hf::read_dir(&fixture("gpt2-tiny")).unwrap();
    let mut store = VarStore::new();
    let model = Gpt2::new(&mut store, config, 16, &mut Init::new(0)).unwrap();
    for t in &tensors {
        let id = store.find(&t.name).unwrap();
        store.vars[id.0].init = t.data.clone();
    }
    (model, store)
}

/// The loss and every parameter's gradient through `backward` on `backend`, against PyTorch's.
fn gradients_match(mut backend: Backend, what: &str) {
    use sinter_model::{backward, VarKind};
    let fx = step_fixture();
    let (model, store) = fixture_model();
    backend.load_vars(&store).unwrap();
    let g = GraphBuilder::new();
    let loss = model.forward(&store, &g, 2, Mode::Train).unwrap().loss;
    let grads = backward(&loss, &[]).unwrap();
    let params = store.ids(VarKind::Param);
    assert_eq!(params.len(), fx.grads.len(), "one gradient per parameter");
    let mut outputs = vec![loss.id];
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
            sinter_model::Op::Input { name } if name == "ids" => fx.ids.as_slice(),
            _ => fx.targets.as_slice(),
        })
        .collect();
    let out = backend.run(&mut p, &feeds, &Default::default()).unwrap();
    let dl = (f64::from(out[0][0]) - fx.loss).abs();
    assert!(
        dl <= LOSS_ATOL,
        "{what}: loss {} vs PyTorch {}",
        out[0][0],
        fx.loss
    );
    let (mut worst, mut worst_rel) = (0f64, 0f64);
    for (slot, &id) in params.iter().enumerate() {
        let name = &store.get(id).name;
        let want = &named(&fx.grads, name).data;
        let max = want.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs()));
        let d = check_close(
            &format!("{what}: d loss / d {name}"),
            &out[slot + 1],
            want,
            |k| grad_tolerance(f64::from(want[k]), max),
        );
        worst = worst.max(d);
        worst_rel = worst_rel.max(d / max);
    }
    eprintln!(
        "{what}: loss |Δ| {dl:.2e}; largest gradient |Δ| {worst:.2e} ({worst_rel:.2e} of its tensor's largest)"
    );
}

#[test]
fn every_gradient_matches_pytorch_on_the_cpu() {
    gradients_match(cpu(), "cpu");
}

#[cfg(feature = "gpu")]
#[test]
fn every_gradient_matches_pytorch_on_the_adapter() {
    let Some(backend) = adapter() else { return };
    gradients_match(backend, "adapter");
}

/// One step of the generic trainer with AdamW as the fixture's settings (constant schedule,
/// whose factor at step 0 is 1; no clipping; decay on matrices only): loss and parameters.
fn one_adamw_step_matches(backend: Backend, what: &str) {
    use sinter_model::optim::{DecayOn, Optimizer, OptimizerKind, Schedule};
    use sinter_model::{Feeds, TrainConfig, Trainer, VarKind};
    use sinter_ops::optim::AdamConfig;
    let fx = step_fixture();
    let (model, store) = fixture_model();
    let a = &fx.adamw;
    let (lr, eps) = (a["lr"].as_f64().unwrap(), a["eps"].as_f64().unwrap());
    // The decay group PyTorch used is the one sinter decays under DecayOn::Matrices.
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
    let before: Vec<NamedTensor> = store
        .vars
        .iter()
        .map(|v| NamedTensor::new(v.name.clone(), v.shape.clone(), v.init.clone()))
        .collect();
    let mut t = Trainer::new(model, store, backend, optimizer, TrainConfig::new(2)).unwrap();
    let feeds = Feeds::new()
        .with("ids", &fx.ids)
        .with("targets", &fx.targets);
    let loss = t.step(&feeds).unwrap().loss;
    let dl = (f64::from(loss) - fx.loss).abs();
    assert!(
        dl <= LOSS_ATOL,
        "{what}: loss {loss} vs PyTorch {}",
        fx.loss
    );
    let after = t.params().unwrap();
    assert_eq!(after.len(), fx.after.len());
    // The largest |Δ| over all values, and over those whose step the gradient's tolerance fixes
    // (its term in the bound under 1e-7); the values it leaves free by over a tenth of the step.
    let (mut worst, mut worst_fixed, mut loose, mut worst_moved) = (0f64, 0f64, 0, 0f64);
    for (p, b) in after.iter().zip(&before) {
        let want = &named(&fx.after, &p.name).data;
        let grad = &named(&fx.grads, &p.name).data;
        let max = grad.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs()));
        let step_tol = |k: usize| {
            let g = f64::from(grad[k]);
            first_step_tolerance(g, grad_tolerance(g, max), lr, eps)
        };
        let d = check_close(
            &format!("{what}: {} after AdamW", p.name),
            &p.data,
            want,
            |k| PARAM_ATOL + PARAM_RTOL * f64::from(want[k]).abs() + step_tol(k),
        );
        worst = worst.max(d);
        for (k, (&x, &w)) in p.data.iter().zip(want.iter()).enumerate() {
            if step_tol(k) < 1e-7 {
                worst_fixed = worst_fixed.max(f64::from(x - w).abs());
            }
            if step_tol(k) > 0.1 * lr {
                loose += 1;
            }
        }
        // The step moved every parameter (by about lr): the comparison is not of unchanged values.
        let moved = p
            .data
            .iter()
            .zip(&b.data)
            .fold(0f64, |m, (x, y)| m.max(f64::from(x - y).abs()));
        worst_moved = worst_moved.max(moved);
        assert!(
            moved > 0.5 * lr,
            "{what}: {} barely moved ({moved:e})",
            p.name
        );
    }
    let total: usize = after.iter().map(|p| p.data.len()).sum();
    assert!(
        loose * 100 < total,
        "{what}: {loose} of {total} values barely checked"
    );
    eprintln!(
        "{what}: loss |Δ| {dl:.2e}; parameters after AdamW: largest |Δ| {worst_fixed:.2e} where the \
         gradient fixes the step's direction, {worst:.2e} over all ({loose} of {total} values \
         have a gradient so close to 0 that their bound exceeds lr/10); the step moved them by up to {worst_moved:.2e}"
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
