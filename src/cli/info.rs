//! `sinter info`: every adapter wgpu finds, with the limits and features that matter for
//! training, and the device `--device auto` would pick.

use super::Result;
use sinter_device::{enumerate_adapters, AdapterReport, DeviceChoice};

pub fn run() -> Result<()> {
    let adapters = enumerate_adapters();
    if adapters.is_empty() {
        println!("no adapters found");
    }
    for (i, a) in adapters.iter().enumerate() {
        let r = AdapterReport::of(a);
        println!("adapter {i}: {}", r.name);
        println!("  backend:              {:?}", r.backend);
        println!("  type:                 {}", r.class);
        println!("  driver:               {}", r.driver);
        println!(
            "  max storage binding:  {} MiB",
            r.max_storage_binding >> 20
        );
        println!(
            "  max workgroup memory: {} KiB",
            r.max_workgroup_storage >> 10
        );
        println!("  max invocations/wg:   {}", r.max_workgroup_invocations);
        println!("  subgroups:            {}", yes(r.subgroups));
        println!("  f16:                  {}", yes(r.f16));
        println!(
            "  timestamp queries:    {}{}",
            yes(r.timestamps),
            if r.timestamps_inside_passes {
                " (inside passes)"
            } else {
                ""
            }
        );
    }
    let env = DeviceChoice::from_env()?;
    let auto = adapters
        .iter()
        .find(|a| AdapterReport::of(a).class.is_hardware());
    match auto {
        Some(a) => println!("auto: would use {} (hardware GPU)", a.get_info().name),
        None => println!("auto: no hardware GPU found, would use the CPU backend"),
    }
    if env != DeviceChoice::Auto {
        println!("{} is set to '{env}'", DeviceChoice::ENV);
    }
    println!("rayon threads for the CPU backend: {}", rayon_threads());
    println!("MPI (train --distributed): {}", mpi_support());
    Ok(())
}

#[cfg(feature = "mpi")]
fn mpi_support() -> String {
    // MPI_Get_library_version may be called before MPI is initialised.
    let library = sinter::distributed::library_version();
    format!("built in ({library})")
}

#[cfg(not(feature = "mpi"))]
fn mpi_support() -> String {
    "not built in (rebuild with `--features mpi`)".to_string()
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
