// Temporary timing harness (not committed).
use sinter::sinter_device::kernels::conv::*;
use sinter::sinter_device::kernels::pool::*;
use sinter::sinter_device::testing::test_gpu;
use sinter::sinter_model::cpu::conv as cc;
use std::time::Instant;

fn shape(n: usize, c: usize, hw: usize, o: usize) -> Conv2dShape {
    Conv2dShape {
        n,
        c_in: c,
        h: hw,
        w: hw,
        c_out: o,
        kh: 3,
        kw: 3,
        stride: [1, 1],
        pad: [1, 1],
        dilation: [1, 1],
    }
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    for (name, s) in [
        ("conv1", shape(64, 1, 28, 32)),
        ("conv2", shape(64, 32, 14, 64)),
    ] {
        let x: Vec<f32> = (0..s.x_len())
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let w: Vec<f32> = (0..s.w_len())
            .map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let dy: Vec<f32> = (0..s.y_len())
            .map(|i| ((i * 31) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let mut y = vec![0.0f32; s.y_len()];
        let mut dx = vec![0.0f32; s.x_len()];
        let mut dw = vec![0.0f32; s.w_len()];
        if which != "gpu" {
            for _ in 0..3 {
                cc::conv2d_forward(&x, &w, &mut y, &s);
                cc::conv2d_grad_input(&dy, &w, &mut dx, &s);
                cc::conv2d_grad_weight(&x, &dy, &mut dw, &s);
            }
            let reps = 20;
            let mut t = [0.0f64; 3];
            for _ in 0..reps {
                let t0 = Instant::now();
                cc::conv2d_forward(&x, &w, &mut y, &s);
                let t1 = Instant::now();
                cc::conv2d_grad_input(&dy, &w, &mut dx, &s);
                let t2 = Instant::now();
                cc::conv2d_grad_weight(&x, &dy, &mut dw, &s);
                let t3 = Instant::now();
                t[0] += (t1 - t0).as_secs_f64();
                t[1] += (t2 - t1).as_secs_f64();
                t[2] += (t3 - t2).as_secs_f64();
            }
            let gf = s.flops() as f64 / 1e9;
            println!(
                "cpu {name}: fwd {:.2} ms, grad_input {:.2} ms, grad_weight {:.2} ms, total {:.2} ms ({:.1} GFLOP/s avg)",
                t[0] / reps as f64 * 1e3, t[1] / reps as f64 * 1e3, t[2] / reps as f64 * 1e3,
                t.iter().sum::<f64>() / reps as f64 * 1e3,
                3.0 * gf / (t.iter().sum::<f64>() / reps as f64)
            );
        }
        if which != "cpu" {
            let gpu = test_gpu().unwrap();
            let xb = gpu.upload("x", &x).unwrap();
            let wb = gpu.upload("w", &w).unwrap();
            let dyb = gpu.upload("dy", &dy).unwrap();
            let yb = gpu.buffer("y", s.y_len()).unwrap();
            let dxb = gpu.buffer("dx", s.x_len()).unwrap();
            let dwb = gpu.buffer("dw", s.w_len()).unwrap();
            let d = [
                conv2d_forward(gpu, &xb, &wb, &yb, &s, "f").unwrap(),
                conv2d_grad_input(gpu, &dyb, &wb, &dxb, &s, "gi").unwrap(),
                conv2d_grad_weight(gpu, &xb, &dyb, &dwb, &s, "gw").unwrap(),
            ];
            for (k, d) in d.iter().enumerate() {
                gpu.run(&[d], &[(&yb, 1)]).unwrap();
                let reps = 3;
                let t0 = Instant::now();
                for _ in 0..reps {
                    gpu.run(&[d], &[(&yb, 1)]).unwrap();
                }
                let dt = t0.elapsed().as_secs_f64() / reps as f64;
                println!(
                    "gpu {name} {}: {:.2} ms ({:.2} GFLOP/s)",
                    ["fwd", "grad_input", "grad_weight"][k],
                    dt * 1e3,
                    s.flops() as f64 / dt / 1e9
                );
            }
            let p = Pool2dShape {
                n: 64,
                c: s.c_out,
                h: 28 / (1 + (name == "conv2") as usize),
                w: 28 / (1 + (name == "conv2") as usize),
                kh: 2,
                kw: 2,
                stride: [2, 2],
                pad: [0, 0],
            };
            let pb = gpu.buffer("p", p.y_len()).unwrap();
            let pdx = gpu.buffer("pdx", p.x_len()).unwrap();
            let pd = [
                max_pool2d(gpu, &yb, &pb, &p, "mp").unwrap(),
                max_pool2d_grad(gpu, &yb, &pb, &pdx, &p, "mpg").unwrap(),
                avg_pool2d(gpu, &yb, &pb, &p, "ap").unwrap(),
                avg_pool2d_grad(gpu, &pb, &pdx, &p, "apg").unwrap(),
            ];
            for (i, d) in pd.iter().enumerate() {
                gpu.run(&[d], &[(&pb, 1)]).unwrap();
                let c0 = cpu_time();
                let t0 = Instant::now();
                for _ in 0..10 {
                    gpu.run(&[d], &[(&pb, 1)]).unwrap();
                }
                println!(
                    "gpu pool {} after {name}: wall {:.2} ms cpu {:.2} ms",
                    ["max", "max_grad", "avg", "avg_grad"][i],
                    t0.elapsed().as_secs_f64() * 100.0,
                    (cpu_time() - c0) * 100.0
                );
            }
        }
    }
}

fn cpu_time() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}
