//! Device faults on an adapter: a lost device (destroyed on purpose, as a driver reset would
//! lose it) turns every later operation into an error naming the loss, never a panic or abort.

mod common;

use common::gpu_backend;
use sinter::sinter_model::{Backend, GraphBuilder, ModelError};

#[test]
fn a_lost_device_turns_into_errors_not_panics() {
    let Some(mut backend) = gpu_backend() else {
        return;
    };
    let g = GraphBuilder::new();
    let x = g.input("x", &[4, 8]);
    let w = g.input("w", &[8, 3]);
    let y = x.matmul(&w).unwrap().relu().sum_all();
    let graph = g.finish();
    let mut prog = backend.compile(&graph, &[y.id]).unwrap();
    let (xs, ws) = (vec![0.5f32; 32], vec![0.25f32; 24]);
    let out = backend
        .run(&mut prog, &[&xs, &ws], &Default::default())
        .unwrap();
    // Each of the 12 outputs is 8 · 0.5 · 0.25 = 1.
    assert_eq!(out[0], vec![12.0]);

    let Backend::Gpu(gpu) = &backend else {
        unreachable!("gpu_backend opens a GPU backend")
    };
    assert!(!gpu.gpu.is_lost());
    gpu.gpu.destroy();
    assert!(gpu.gpu.is_lost(), "the device-lost callback ran");

    let lost = |what: &str, e: ModelError| {
        let text = e.to_string();
        assert!(
            matches!(
                e,
                ModelError::Device(sinter::sinter_device::DeviceError::DeviceLost(_))
            ),
            "{what}: {text}"
        );
        assert!(text.contains("device was lost"), "{what}: {text}");
    };
    let step = backend.run(&mut prog, &[&xs, &ws], &Default::default());
    lost("a step", step.unwrap_err());
    let compiled = backend.compile(&graph, &[y.id]);
    lost(
        "compiling",
        compiled.err().expect("compiling on a lost device fails"),
    );
    // A second step fails the same way: the fault stays.
    let step = backend.run(&mut prog, &[&xs, &ws], &Default::default());
    lost("another step", step.unwrap_err());
}

#[test]
fn an_uncaptured_validation_error_fails_the_next_operation() {
    let Some(backend) = gpu_backend() else {
        return;
    };
    let Backend::Gpu(gpu) = &backend else {
        unreachable!("gpu_backend opens a GPU backend")
    };
    let gpu = &gpu.gpu;
    gpu.check_fault().unwrap();
    // Outside any error scope: a mappable buffer may not also be a storage buffer.
    let _bad = gpu
        .device
        .create_buffer(&sinter::sinter_device::wgpu::BufferDescriptor {
            label: Some("invalid usage"),
            size: 64,
            usage: sinter::sinter_device::wgpu::BufferUsages::MAP_READ
                | sinter::sinter_device::wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
    let e = gpu.check_fault().unwrap_err().to_string();
    assert!(e.contains("uncaptured"), "{e}");
    let e = gpu.buffer("after the error", 16).unwrap_err().to_string();
    assert!(e.contains("uncaptured"), "{e}");
    assert!(!gpu.is_lost());
}
