// Temporary lab harness (not committed): runs experimental conv entry points from a WGSL file.
use sinter::sinter_device::kernels::conv::Conv2dShape;
use sinter::sinter_device::testing::test_gpu;
use sinter::sinter_device::wgpu;
use sinter::sinter_model::cpu::conv as cc;
use std::time::Instant;
use wgpu::util::DeviceExt;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let file = &args[1];
    let entry = &args[2]; // fwd_* | gi_* | gw_*
    let scheme = &args[3]; // grid scheme: "pix:<per_wg>:<tm>" or "gw:<tn>:<rows_per_wg>"
    let which = args.get(4).map(String::as_str).unwrap_or("conv2");
    let s = match which {
        "conv1" => Conv2dShape {
            n: 64,
            c_in: 1,
            h: 28,
            w: 28,
            c_out: 32,
            kh: 3,
            kw: 3,
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
        },
        "odd" => Conv2dShape {
            n: 3,
            c_in: 5,
            h: 9,
            w: 12,
            c_out: 19,
            kh: 3,
            kw: 5,
            stride: [2, 1],
            pad: [1, 2],
            dilation: [1, 2],
        },
        "odd2" => Conv2dShape {
            n: 2,
            c_in: 3,
            h: 7,
            w: 13,
            c_out: 33,
            kh: 3,
            kw: 3,
            stride: [1, 2],
            pad: [0, 1],
            dilation: [2, 1],
        },
        _ => Conv2dShape {
            n: 64,
            c_in: 32,
            h: 14,
            w: 14,
            c_out: 64,
            kh: 3,
            kw: 3,
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
        },
    };
    let gpu = test_gpu().unwrap();
    let overrides: Vec<(&str, f64)> = std::env::var("OVR")
        .ok()
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (
                        &*Box::leak(k.to_string().into_boxed_str()),
                        v.parse().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let src = std::fs::read_to_string(file).unwrap();
    let module = gpu
        .device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: None,
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
    let pipeline = gpu
        .device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &overrides,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
    let x: Vec<f32> = (0..s.x_len())
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let w: Vec<f32> = (0..s.w_len())
        .map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let dy: Vec<f32> = (0..s.y_len())
        .map(|i| ((i * 31) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let [oh, ow] = s.out_hw().unwrap();
    let params: Vec<u32> = [
        s.n,
        s.c_in,
        s.h,
        s.w,
        s.c_out,
        s.kh,
        s.kw,
        oh,
        ow,
        s.stride[0],
        s.stride[1],
        s.pad[0],
        s.pad[1],
        s.dilation[0],
        s.dilation[1],
        0,
    ]
    .iter()
    .map(|&v| v as u32)
    .collect();
    let pb = gpu
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck_cast(&params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
    let (ins, out_len, want): ([Vec<f32>; 2], usize, Vec<f32>) =
        if (entry.starts_with("fwd") || entry.contains("forward")) {
            let mut y = vec![0.0; s.y_len()];
            cc::conv2d_forward(&x, &w, &mut y, &s);
            ([x.clone(), w.clone()], s.y_len(), y)
        } else if (entry.starts_with("gi") || entry.contains("grad_input")) {
            let mut d = vec![0.0; s.x_len()];
            cc::conv2d_grad_input(&dy, &w, &mut d, &s);
            ([dy.clone(), w.clone()], s.x_len(), d)
        } else {
            let mut d = vec![0.0; s.w_len()];
            cc::conv2d_grad_weight(&x, &dy, &mut d, &s);
            ([x.clone(), dy.clone()], s.w_len(), d)
        };
    let b0 = gpu.upload("a", &ins[0]).unwrap();
    let b1 = gpu.upload("b", &ins[1]).unwrap();
    let bo = gpu.buffer("o", out_len).unwrap();
    gpu.write(&bo, &vec![f32::NAN; out_len]);
    let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: pb.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: b0.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: b1.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 3,
                resource: bo.as_entire_binding(),
            },
        ],
    });
    let parts: Vec<usize> = scheme
        .split(':')
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    let groups = if scheme.starts_with("pix") {
        // parts: pixels per workgroup, channels per workgroup
        let (pix, rows) = if (entry.starts_with("fwd") || entry.contains("forward")) {
            (s.n * oh * ow, s.c_out)
        } else {
            (s.n * s.h * s.w, s.c_in)
        };
        [
            pix.div_ceil(parts[0]) as u32,
            1,
            rows.div_ceil(parts[1]) as u32,
        ]
    } else {
        // parts: taps per workgroup, rows (o) per workgroup
        let k = s.c_in * s.kh * s.kw;
        [
            k.div_ceil(parts[0]) as u32,
            1,
            s.c_out.div_ceil(parts[1]) as u32,
        ]
    };
    let run = || {
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        gpu.finish_and_read(enc, &[(&bo, out_len)])
            .unwrap()
            .pop()
            .unwrap()
    };
    let got = run();
    let mut worst = 0.0f32;
    let mut bad = 0;
    for (g, w) in got.iter().zip(&want) {
        let e = (g - w).abs();
        if !(e <= 1e-3 + 1e-3 * w.abs()) {
            bad += 1;
        }
        if e.is_nan() {
            worst = f32::NAN
        } else {
            worst = worst.max(e)
        }
    }
    let t0 = Instant::now();
    let c0 = cpu_time();
    let mut reps = 0;
    while t0.elapsed().as_secs_f64() < 1.5 || reps < 2 {
        run();
        reps += 1;
    }
    let dt = t0.elapsed().as_secs_f64() / reps as f64;
    let ct = (cpu_time() - c0) / reps as f64;
    print!("cpu-time {:.2} ms (/2 = {:.2}) | ", ct * 1e3, ct * 500.0);
    println!(
        "{entry} {scheme} {which}: {:.2} ms, {:.2} GFLOP/s, worst err {worst:e}, bad {bad}/{}",
        dt * 1e3,
        s.flops() as f64 / dt / 1e9,
        want.len()
    );
}

fn bytemuck_cast(v: &[u32]) -> &[u8] {
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len() * 4) }
}

fn cpu_time() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}
