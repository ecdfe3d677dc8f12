//! GPT-2 against Hugging Face `transformers`: the fixture folder (made by scripts/gpt2_fixture.py)
//! loads, its logits and loss match on the CPU backend, folders round-trip bit-exactly, errors name file and tensor.

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
