//! A training loop written by hand over the low-level API: record a graph, differentiate it,
//! append the optimizer's updates, compile once, and run it step by step;
//! `cargo run --example manual_loop`.

use sinter::sinter_model::backward::param_gradients;
use sinter::sinter_model::VarKind;
use sinter::{
    backward, Backend, DeviceChoice, GraphBuilder, Init, Linear, Optimizer, OptimizerKind, Result,
    VarStore,
};

fn main() -> Result<()> {
    // A two-layer network regressing y = sin(x) on [-3, 3].
    let n = 128;
    let x: Vec<f32> = (0..n).map(|i| i as f32 / n as f32 * 6.0 - 3.0).collect();
    let y: Vec<f32> = x.iter().map(|v| v.sin()).collect();

    let (mut store, mut init) = (VarStore::new(), Init::new(0));
    let fc1 = Linear::new(&mut store, "fc1", 1, 32, &mut init);
    let fc2 = Linear::new(&mut store, "fc2", 32, 1, &mut init);

    // 1. Record the forward pass and the loss: nothing is computed yet.
    let g = GraphBuilder::new();
    let xs = g.input("x", &[n, 1]);
    let ys = g.input("y", &[n, 1]);
    let pred = fc2.forward(&store, &fc1.forward(&store, &xs)?.tanh())?;
    let loss = pred.mse(&ys)?;

    // 2. Differentiate, and pair each parameter with its gradient node.
    let grads = backward(&loss, &[])?;
    let params: Vec<_> = store
        .ids(VarKind::Param)
        .into_iter()
        .map(|id| {
            (
                id,
                g.var_leaf(id).unwrap_or(usize::MAX),
                store.get(id).name.clone(),
            )
        })
        .collect();
    let pairs: Vec<_> = params
        .iter()
        .map(|p| p.0)
        .zip(param_gradients(&grads, &params)?)
        .collect();

    // 3. Append the optimizer's in-place updates, then load the variables and compile once.
    let optimizer = Optimizer::new(OptimizerKind::adam(0.0), 0.01);
    optimizer.add_state(&mut store);
    optimizer.append_updates(&g, &store, &pairs)?;
    let (mut backend, _) = Backend::open(DeviceChoice::from_env()?)?;
    backend.load_vars(&store)?;
    let mut step_program = backend.compile(&g.finish(), &[loss.id])?;
    println!(
        "{} kernels per step; planned memory {} bytes",
        step_program.kernel_count(),
        step_program.memory().planned_bytes
    );

    // 4. Run it: feeds in the order the inputs were recorded (x, then y).
    let mut first = f32::NAN;
    for step in 0..400u64 {
        let out = backend.run(&mut step_program, &[&x, &y], &optimizer.scalars(step))?;
        let l = out[0][0];
        if step == 0 {
            first = l;
        }
        if step % 100 == 0 {
            println!("step {step:3}  mse {l:.5}");
        }
    }
    let out = backend.run(&mut step_program, &[&x, &y], &optimizer.scalars(400))?;
    println!("mse {first:.4} at step 0, {:.5} after 400 steps", out[0][0]);
    if out[0][0].is_nan() || out[0][0] >= first / 5.0 {
        return Err(sinter::ModelError::Config("the loss did not fall".into()));
    }
    Ok(())
}
