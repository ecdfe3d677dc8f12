//! Finding adapters and choosing one: hardware GPUs first, software adapters (lavapipe, llvmpipe,
//! WARP) only when asked for, and the CPU backend when no hardware GPU is present.

use crate::error::{DeviceError, Result};
use std::fmt;

pub use sinter_ops::DeviceChoice;
use sinter_ops::{AdapterKind, AdapterPick};

/// How an adapter is classified for selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AdapterClass {
    /// A discrete GPU (its own memory).
    Discrete,
    /// A GPU sharing the host's memory.
    Integrated,
    /// Hardware of unknown or virtual type.
    OtherHardware,
    /// Device type CPU: lavapipe, llvmpipe GL, WARP.
    Software,
}

impl AdapterClass {
    /// The class of an adapter, from its reported device type (and name, for software
    /// rasterizers that report `Other`).
    pub fn of(info: &wgpu::AdapterInfo) -> Self {
        match info.device_type {
            wgpu::DeviceType::DiscreteGpu => Self::Discrete,
            wgpu::DeviceType::IntegratedGpu => Self::Integrated,
            wgpu::DeviceType::Cpu => Self::Software,
            wgpu::DeviceType::VirtualGpu | wgpu::DeviceType::Other => {
                // Some software rasterizers report `Other`; recognise them by name.
                let name = info.name.to_ascii_lowercase();
                if [
                    "llvmpipe",
                    "lavapipe",
                    "softpipe",
                    "swiftshader",
                    "warp",
                    "basic render",
                ]
                .iter()
                .any(|s| name.contains(s))
                {
                    Self::Software
                } else {
                    Self::OtherHardware
                }
            }
        }
    }

    /// Whether this is a real GPU rather than a software rasterizer.
    pub fn is_hardware(self) -> bool {
        self != Self::Software
    }
}

impl fmt::Display for AdapterClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Discrete => "hardware (discrete GPU)",
            Self::Integrated => "hardware (integrated GPU)",
            Self::OtherHardware => "hardware (other)",
            Self::Software => "software",
        })
    }
}

/// One adapter as `sinter info` shows it.
#[derive(Clone, Debug)]
pub struct AdapterReport {
    /// The adapter's name as the driver reports it.
    pub name: String,
    /// The graphics API it is reached through (Vulkan, Metal, DX12, GL).
    pub backend: wgpu::Backend,
    /// Hardware or software, as selection sees it.
    pub class: AdapterClass,
    /// Driver name and version, or `unknown`.
    pub driver: String,
    /// `max_storage_buffer_binding_size`, in bytes: the largest tensor one kernel may bind.
    pub max_storage_binding: u64,
    /// `max_compute_workgroup_storage_size`, in bytes (shared memory per workgroup).
    pub max_workgroup_storage: u32,
    /// `max_compute_invocations_per_workgroup`.
    pub max_workgroup_invocations: u32,
    /// The adapter's subgroup sizes (smallest, largest) where it offers subgroup operations.
    pub subgroups: Option<(u32, u32)>,
    /// Whether the adapter offers `f16` in shaders.
    pub f16: bool,
    /// Whether timestamp queries exist (per-kernel GPU times).
    pub timestamps: bool,
    /// Whether timestamps may be written inside compute passes (one per dispatch).
    pub timestamps_inside_passes: bool,
}

impl AdapterReport {
    /// Whether the adapter has subgroup operations (which a device opened on it requests) and
    /// every subgroup holds at least `lanes` invocations: a workgroup of `lanes` is one subgroup.
    pub fn subgroups_of_at_least(&self, lanes: u32) -> bool {
        self.subgroups.is_some_and(|(min, _)| min >= lanes)
    }

    /// The adapter's subgroups in words, for errors.
    pub fn subgroup_report(&self) -> String {
        match self.subgroups {
            Some((min, max)) => format!("subgroups of {min}–{max} lanes on {}", self.name),
            None => format!("no subgroup operations on {}", self.name),
        }
    }

    /// Reads an adapter's name, class, driver, limits and features.
    pub fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features();
        let driver = match (info.driver.is_empty(), info.driver_info.is_empty()) {
            (true, true) => "unknown".to_string(),
            (false, true) => info.driver.clone(),
            (true, false) => info.driver_info.clone(),
            (false, false) => format!("{} {}", info.driver, info.driver_info),
        };
        Self {
            class: AdapterClass::of(&info),
            subgroups: features
                .contains(wgpu::Features::SUBGROUP)
                .then_some((info.subgroup_min_size, info.subgroup_max_size)),
            name: info.name,
            backend: info.backend,
            driver,
            max_storage_binding: limits.max_storage_buffer_binding_size,
            max_workgroup_storage: limits.max_compute_workgroup_storage_size,
            max_workgroup_invocations: limits.max_compute_invocations_per_workgroup,
            f16: features.contains(wgpu::Features::SHADER_F16),
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            timestamps_inside_passes: features
                .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
        }
    }
}

/// An instance of just `backends` (or of those `WGPU_BACKEND` names): an instance that includes
/// GL opens EGL when it is created, which on a headless machine prints
/// `error: XDG_RUNTIME_DIR is invalid or not set` to stderr whether or not GL is then used.
fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if std::env::var_os("WGPU_BACKEND").is_none() {
        desc.backends = backends;
    }
    wgpu::Instance::new(desc)
}

/// Every adapter wgpu can see, best first: discrete, integrated, other hardware, then software.
/// GL is probed only when Vulkan, Metal and DX12 find nothing (a working stack lists every GPU
/// it has), or when `WGPU_BACKEND` asks for it.
pub fn enumerate_adapters() -> Vec<wgpu::Adapter> {
    if std::env::var_os("WGPU_BACKEND").is_some() {
        return enumerate_on(wgpu::Backends::all());
    }
    let primary = enumerate_on(wgpu::Backends::PRIMARY);
    if !primary.is_empty() {
        return primary;
    }
    enumerate_on(wgpu::Backends::GL)
}

fn enumerate_on(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let instance = instance(backends);
    let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
    adapters.sort_by_key(|a| {
        let info = a.get_info();
        (AdapterClass::of(&info), info.backend == wgpu::Backend::Gl)
    });
    adapters
}

/// The adapter a choice resolves to: `Ok(None)` means "use the CPU backend".
///
/// Vulkan, Metal and DX12 are searched first; GL only for `gpu` and `software` (or `WGPU_BACKEND`)
/// when they find no adapter at all (or no software one, for `software`), because opening GL
/// (EGL) is slow and prints errors on a machine without a display.
pub fn pick_adapter(choice: DeviceChoice) -> Result<Option<wgpu::Adapter>> {
    pick_adapter_nth(choice, 0)
}

/// As [`pick_adapter`], for the `nth` process on a machine (a data-parallel rank): with several
/// adapters of the best class, process k takes adapter k mod their count, so ranks spread over
/// the GPUs (and share them when there are more ranks than GPUs).
pub fn pick_adapter_nth(choice: DeviceChoice, nth: usize) -> Result<Option<wgpu::Adapter>> {
    let wanted = |a: &wgpu::Adapter| {
        let class = AdapterClass::of(&a.get_info());
        match choice {
            DeviceChoice::Software => !class.is_hardware(),
            _ => class.is_hardware(),
        }
    };
    if choice == DeviceChoice::Cpu {
        return Ok(None);
    }
    if let DeviceChoice::One { kind, pick } = choice {
        return pick_one(kind, pick).map(Some);
    }
    let searches = if std::env::var_os("WGPU_BACKEND").is_some() {
        vec![wgpu::Backends::all()]
    } else if choice == DeviceChoice::Auto {
        // `auto` falls back to the CPU backend quietly rather than open EGL unasked.
        vec![wgpu::Backends::PRIMARY]
    } else {
        vec![wgpu::Backends::PRIMARY, wgpu::Backends::GL]
    };
    for backends in searches {
        let adapters = enumerate_on(backends);
        let any = !adapters.is_empty();
        let mut fitting: Vec<wgpu::Adapter> = adapters.into_iter().filter(wanted).collect();
        if let Some(best) = fitting.first().map(|a| AdapterClass::of(&a.get_info())) {
            // Sorted best class first: only adapters as good as the best one share the ranks.
            fitting.retain(|a| AdapterClass::of(&a.get_info()) == best);
            let k = nth % fitting.len();
            return Ok(Some(fitting.swap_remove(k)));
        }
        // A working Vulkan/Metal/DX12 stack lists every GPU it has; GL would add none.
        if any && choice != DeviceChoice::Software {
            break;
        }
    }
    let seen = || {
        let names: Vec<String> = enumerate_adapters()
            .iter()
            .map(|a| {
                let info = a.get_info();
                format!(
                    "{} [{:?}, {}]",
                    info.name,
                    info.backend,
                    AdapterClass::of(&info)
                )
            })
            .collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join("; ")
        }
    };
    match choice {
        DeviceChoice::Auto | DeviceChoice::Cpu | DeviceChoice::One { .. } => Ok(None),
        DeviceChoice::Gpu | DeviceChoice::Software => Err(DeviceError::NoAdapter {
            wanted: choice,
            seen: seen(),
        }),
    }
}

fn of_kind(a: &wgpu::Adapter, kind: AdapterKind) -> bool {
    AdapterClass::of(&a.get_info()).is_hardware() == (kind == AdapterKind::Hardware)
}

/// The adapters of `kind`, best first as `sinter info` lists them: those Vulkan, Metal and DX12
/// find, or GL's when they find none of the kind (or all of `WGPU_BACKEND`'s).
pub fn adapters_of(kind: AdapterKind) -> Vec<wgpu::Adapter> {
    if std::env::var_os("WGPU_BACKEND").is_some() {
        return enumerate_on(wgpu::Backends::all())
            .into_iter()
            .filter(|a| of_kind(a, kind))
            .collect();
    }
    for backends in [wgpu::Backends::PRIMARY, wgpu::Backends::GL] {
        let found: Vec<wgpu::Adapter> = enumerate_on(backends)
            .into_iter()
            .filter(|a| of_kind(a, kind))
            .collect();
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}

/// How `--device` names each adapter of `kind`: `gpu:0 NVIDIA … [Vulkan]; gpu:1 …`.
fn list_of(kind: AdapterKind, adapters: &[wgpu::Adapter]) -> String {
    let (prefix, none) = match kind {
        AdapterKind::Hardware => ("gpu", "no hardware GPU"),
        AdapterKind::Software => ("software", "no software adapter"),
    };
    if adapters.is_empty() {
        return none.to_string();
    }
    let names: Vec<String> = adapters
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let info = a.get_info();
            format!("{prefix}:{i} {} [{:?}]", info.name, info.backend)
        })
        .collect();
    names.join(", ")
}

/// The adapter `gpu:N`, `software:N`, `gpu:NAME` or `software:NAME` names, or an error that
/// lists every adapter found, hardware and software, as `--device` names them.
fn pick_one(kind: AdapterKind, pick: AdapterPick) -> Result<wgpu::Adapter> {
    let mut found = adapters_of(kind);
    let at = match pick {
        AdapterPick::Index(n) => (n < found.len()).then_some(n),
        AdapterPick::Name(part) => found.iter().position(|a| part.matches(&a.get_info().name)),
    };
    if let Some(k) = at {
        return Ok(found.swap_remove(k));
    }
    // The other kind as `sinter info` lists it (no second GL probe).
    let listed = |k| {
        enumerate_adapters()
            .into_iter()
            .filter(|a| of_kind(a, k))
            .collect::<Vec<_>>()
    };
    let (hardware, software) = match kind {
        AdapterKind::Hardware => (found, listed(AdapterKind::Software)),
        AdapterKind::Software => (listed(AdapterKind::Hardware), found),
    };
    Err(DeviceError::NoSuchAdapter {
        wanted: DeviceChoice::One { kind, pick }.to_string(),
        seen: format!(
            "{}; {}",
            list_of(AdapterKind::Hardware, &hardware),
            list_of(AdapterKind::Software, &software)
        ),
    })
}
