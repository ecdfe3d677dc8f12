//! `sinter info`: every adapter wgpu finds, with the limits and features that matter for
//! training and the `--device` that picks it, and the device `auto` (or `--device …`) would use.

use super::{CliError, Result};
use clap::Args;
use sinter_device::{canary, enumerate_adapters, pick_adapter, tune, AdapterReport, DeviceChoice};

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Also say which adapter (or the CPU backend) this choice would use: auto, gpu, software,
    /// cpu, gpu:N, software:N, gpu:NAME, software:NAME (part of the name); or SINTER_DEVICE.
    #[arg(long)]
    pub device: Option<String>,
}

/// The start-up canary's cached verdict for this adapter and driver (running nothing).
fn canary_line(r: &AdapterReport) -> String {
    let Some(dir) = canary::cache_dir() else {
        return "no cache folder on this platform: runs each time a device opens".into();
    };
    match canary::cached_verdict(r, &dir) {
        None => "not run yet on this driver (it runs when a device first opens here)".into(),
        Some(v) if v.disabled.is_empty() => format!(
            "all {} kernel variants passed their known answers",
            v.passed.len()
        ),
        Some(v) => {
            let off: Vec<String> = v
                .disabled
                .iter()
                .map(|(k, why)| format!("{k} ({why})"))
                .collect();
            format!(
                "disabled {} (the launchers use another variant); {} others passed",
                off.join(", "),
                v.passed.len()
            )
        }
    }
}

/// The tuner's cached choices for this adapter and driver (running nothing).
fn tuned_lines(r: &AdapterReport) {
    let Some(dir) = canary::cache_dir() else {
        return;
    };
    match tune::cached_choices(r, &dir) {
        Err(why) => println!(
            "  tuned:                cache {} ignored: {why}",
            dir.join(tune::CACHE_FILE).display()
        ),
        Ok(c) if c.is_empty() => println!(
            "  tuned:                nothing yet (kernels are tuned when a model first compiles \
             here, or by `sinter tune`)"
        ),
        Ok(choices) => {
            println!("  tuned:                {} shape classes", choices.len());
            for (key, c) in &choices {
                println!(
                    "    {key:<56} {:<22} {}",
                    c.variant,
                    super::tune::timings(Some(c))
                );
            }
        }
    }
}

pub fn run(args: InfoArgs) -> Result<()> {
    let adapters = enumerate_adapters();
    if adapters.is_empty() {
        println!("no adapters found");
    }
    let (mut gpus, mut software) = (0, 0);
    for (i, a) in adapters.iter().enumerate() {
        let r = AdapterReport::of(a);
        println!("adapter {i}: {}", r.name);
        // The index among adapters of its kind, as `--device gpu:N` / `software:N` count.
        let select = if r.class.is_hardware() {
            gpus += 1;
            format!("gpu:{}", gpus - 1)
        } else {
            software += 1;
            format!("software:{}", software - 1)
        };
        println!("  --device:             {select}");
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
        println!(
            "  storage buffers:      {} per shader stage",
            a.limits().max_storage_buffers_per_shader_stage
        );
        match r.subgroups {
            Some((min, max)) if min == max => println!("  subgroups:            yes, {min} lanes"),
            Some((min, max)) => println!("  subgroups:            yes, {min}–{max} lanes"),
            None => println!("  subgroups:            no"),
        }
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
        // What the kernels need of this adapter's limits, and what happens where it has less.
        let short = sinter_device::limits::shortfalls(&a.limits());
        if short.is_empty() {
            println!("  limits:               all the kernels need");
        }
        for s in short {
            println!("  limit short:          {s}");
        }
        println!("  canary:               {}", canary_line(&r));
        tuned_lines(&r);
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
    let (choice, given) = match &args.device {
        Some(d) => (
            DeviceChoice::parse(d).map_err(|e| CliError::Usage(format!("--device: {e}")))?,
            format!("--device {d}"),
        ),
        None => (env, format!("{}={env}", DeviceChoice::ENV)),
    };
    if args.device.is_some() || env != DeviceChoice::Auto {
        match pick_adapter(choice)? {
            Some(a) => {
                let info = a.get_info();
                println!("{given}: would use {} ({:?})", info.name, info.backend);
            }
            None if choice == DeviceChoice::Cpu => println!("{given}: would use the CPU backend"),
            None => println!("{given}: no hardware GPU found, would use the CPU backend"),
        }
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
