//! The GPU context: one wgpu device and queue, a pipeline cache, a buffer pool, and the way
//! kernels run: dispatches are prepared once, then recorded into one encoder and submitted together.

use crate::adapter::AdapterReport;
use crate::error::{DeviceError, Result};
use crate::pool::{BufferPool, PoolStats};
use crate::readback::{read_mapped, Submitted};
use crate::shaders::Shader;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// Identifies one compiled pipeline: shader file, entry point and its override constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    shader: Shader,
    entry: &'static str,
    /// Override constants as (name, value bits), so the key is hashable.
    overrides: Vec<(&'static str, u64)>,
}

/// What a kernel launch needs: which entry point, its specialization, its parameters and buffers.
///
/// Binding convention shared by every WGSL kernel: `@binding(0)` is the `params` uniform,
/// `@binding(1..)` are the storage buffers in the order given here (inputs first, outputs last).
pub struct Launch<'a> {
    /// The WGSL file holding the entry point.
    pub shader: Shader,
    /// The `@compute` function to run.
    pub entry: &'static str,
    /// WGSL `override` constants by name (`OP`, tile sizes, …); part of the pipeline's cache key.
    pub overrides: &'a [(&'static str, f64)],
    /// The contents of the `params` uniform (u32/f32 words; padded to 16 bytes here).
    pub params: &'a [u32],
    /// Storage buffers for `@binding(1..)`, inputs first, outputs last.
    pub buffers: &'a [&'a wgpu::Buffer],
    /// The grid, `[x, y, z]` workgroups; checked against the adapter's per-dimension limit.
    pub workgroups: [u32; 3],
    /// What this dispatch computes in model terms, e.g. `fc1 · forward`.
    pub tag: String,
    /// Floating-point operations of the whole dispatch (from the sinter-ops cost model).
    pub flops: u64,
    /// Bytes the dispatch must move to and from memory at least (cost model), for GB/s.
    pub bytes: u64,
}

/// A prepared kernel launch: pipeline, bind group and grid are fixed; recording it costs nothing more.
pub struct Dispatch {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    /// The grid, `[x, y, z]` workgroups; an empty grid records nothing.
    pub workgroups: [u32; 3],
    /// The entry point it runs, for profiles.
    pub entry: &'static str,
    /// The WGSL file of the entry point.
    pub shader: Shader,
    /// What it computes in model terms, copied from its [`Launch`].
    pub tag: String,
    /// Floating-point operations, copied from its [`Launch`].
    pub flops: u64,
    /// Minimum bytes moved, copied from its [`Launch`].
    pub bytes: u64,
    /// Its specialization as compiled: the launch's override constants, then `WG` where the
    /// shader takes it. With `params` and `buffers`, enough to replay the launch on another
    /// WebGPU implementation (tests/dawn.rs does).
    pub constants: Vec<(&'static str, f64)>,
    /// The words of its parameter uniform (binding 0).
    pub params: Vec<u32>,
    /// The storage buffers it binds, in binding order (bindings 1, 2, …).
    pub buffers: Vec<wgpu::Buffer>,
}

impl Dispatch {
    /// Sets this dispatch's pipeline and bind group on `pass` and dispatches its grid; an empty
    /// grid records nothing. Every recording of a dispatch (steps and profiles) goes through this.
    pub(crate) fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        if self.workgroups.contains(&0) {
            return;
        }
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.workgroups[0], self.workgroups[1], self.workgroups[2]);
    }
}

/// A failure the device reported outside any error scope: through the device-lost callback or
/// the uncaptured-error handler. The first one is kept and returned by every later operation.
#[derive(Clone, Debug)]
enum Fault {
    Lost(String),
    Uncaptured(String),
}

impl Fault {
    fn error(&self) -> DeviceError {
        match self {
            Fault::Lost(m) => DeviceError::DeviceLost(m.clone()),
            Fault::Uncaptured(m) => DeviceError::Gpu(format!("uncaptured: {m}")),
        }
    }
}

/// Test hook, read when a device opens: after this many submits the device is destroyed, as if
/// the driver had lost it, so tests can check that training stops cleanly and says how to resume.
pub const LOSE_DEVICE_ENV: &str = "SINTER_TEST_LOSE_DEVICE_AFTER_SUBMITS";

/// A GPU device ready to run sinter's kernels.
pub struct Gpu {
    /// The wgpu device; kernels are compiled and buffers created on it.
    pub device: wgpu::Device,
    /// The device's one queue: every submit goes here.
    pub queue: wgpu::Queue,
    /// Which adapter this device was opened on (name, backend, class).
    pub report: AdapterReport,
    /// The limits the device was opened with ([`crate::limits::requested`] of the adapter's).
    pub limits: wgpu::Limits,
    /// Invocations per workgroup of the families that take the `WG` override.
    wide_workgroup: u32,
    /// Kernel variants (entry points) the start-up canary disabled on this adapter and driver.
    disabled: Mutex<std::collections::BTreeSet<String>>,
    modules: Mutex<HashMap<Shader, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
    pub(crate) pool: BufferPool,
    staging: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    fault: Arc<Mutex<Option<Fault>>>,
    submits: AtomicU64,
    lose_after_submits: Option<u64>,
    /// The WGSL compiled for a shader: [`Shader::source`], except in tests that feed a shader
    /// the backend rejects.
    source_of: fn(Shader) -> &'static str,
    /// The driver's compiled pipelines, kept on disk between runs (Vulkan).
    pipeline_cache: Option<crate::pipeline_cache::DiskPipelineCache>,
    /// Which kernel variants run, by measurement ([`crate::tune`]).
    tuner: crate::tune::Tuner,
}

/// Runs `f` inside validation, out-of-memory and internal error scopes and turns what they catch
/// into errors. Internal errors are how wgpu reports a shader that passed validation but that the
/// backend's compiler rejected (a driver's GLSL/HLSL/MSL compiler, naga's translation): uncaught,
/// they would reach the uncaptured-error handler and mark the whole device failed.
pub(crate) fn scoped<T>(device: &wgpu::Device, what: &str, f: impl FnOnce() -> T) -> Result<T> {
    let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
    let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let value = f();
    // Scopes are a stack: popped in the reverse order of their pushes.
    let validation = pollster::block_on(validation.pop());
    let oom = pollster::block_on(oom.pop());
    let internal = pollster::block_on(internal.pop());
    match validation.or(oom).or(internal) {
        Some(e) => Err(DeviceError::Gpu(format!("{what}: {}", describe(&e)))),
        None => Ok(value),
    }
}

/// wgpu's error with its description: its `Display` says only which kind it is.
fn describe(e: &wgpu::Error) -> String {
    match e {
        wgpu::Error::Validation { description, .. } => format!("validation error: {description}"),
        wgpu::Error::Internal { description, .. } => {
            format!("internal error (the backend's shader compiler or driver): {description}")
        }
        wgpu::Error::OutOfMemory { source } => format!("out of memory: {source}"),
    }
}

impl Gpu {
    /// Opens a device on `adapter` with the limits the kernels and tensors need
    /// ([`crate::limits::requested`]), and applies the start-up canary's verdict for its driver
    /// (run now the first time the pair is seen, cached after: [`crate::canary`]). Kernel
    /// variants are then tuned by measurement ([`crate::tune`]) unless `SINTER_NO_TUNE` is set.
    pub fn new(adapter: wgpu::Adapter) -> Result<Self> {
        let limits = crate::limits::requested(&adapter.limits());
        let gpu = Self::open(adapter, limits, Shader::source)?;
        let verdict = crate::canary::verdict(&gpu, crate::canary::cache_dir().as_deref());
        gpu.apply_canary(&verdict);
        gpu.tuner.set_enabled(crate::tune::enabled_by_env());
        gpu.persist_pipelines();
        Ok(gpu)
    }

    /// Writes the pipelines compiled so far to the on-disk pipeline cache (where the device has
    /// one and new pipelines were compiled since the last write), so the next run on this
    /// adapter and driver does not compile them again. A write that fails costs a warning.
    pub fn persist_pipelines(&self) {
        if let Some(cache) = &self.pipeline_cache {
            match cache.persist() {
                Ok(true) => log::debug!("pipeline cache written to {}", cache.file().display()),
                Ok(false) => {}
                Err(e) => log::warn!(
                    "could not keep compiled pipelines in {}: {e}",
                    cache.file().display()
                ),
            }
        }
    }

    /// The on-disk pipeline cache, where the device has one (Vulkan with `PIPELINE_CACHE`).
    pub fn pipeline_cache(&self) -> Option<&crate::pipeline_cache::DiskPipelineCache> {
        self.pipeline_cache.as_ref()
    }

    /// Disables the variants `verdict` found failing (see [`Gpu::is_disabled`]).
    pub fn apply_canary(&self, verdict: &crate::canary::Verdict) {
        *self.disabled.lock().unwrap_or_else(|p| p.into_inner()) =
            verdict.disabled.keys().cloned().collect();
    }

    /// Whether the start-up canary disabled this variant (`matmul_v3_tiled`, `softmax_tree`,
    /// `conv2d_forward TM=8`, …) here.
    pub fn is_disabled(&self, variant: &str) -> bool {
        self.disabled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(variant)
    }

    /// Runs `f` with no variant disabled and no tuning (the canary's own runs must reach every
    /// variant, each by the static rule), then restores both.
    pub(crate) fn with_every_variant<T>(&self, f: impl FnOnce() -> T) -> T {
        let lock = || self.disabled.lock().unwrap_or_else(|p| p.into_inner());
        let disabled = std::mem::take(&mut *lock());
        let tuning = self.tuner.enabled();
        self.tuner.set_enabled(false);
        let value = f();
        self.tuner.set_enabled(tuning);
        *lock() = disabled;
        value
    }

    /// The device's tuner: whether it tunes, its choices and counters ([`crate::tune`]).
    pub fn tuner(&self) -> &crate::tune::Tuner {
        &self.tuner
    }

    /// [`Gpu::new`] with `limits` (at most the adapter's), compiling each shader from
    /// `source_of(shader)`.
    pub(crate) fn open(
        adapter: wgpu::Adapter,
        limits: wgpu::Limits,
        source_of: fn(Shader) -> &'static str,
    ) -> Result<Self> {
        let report = AdapterReport::of(&adapter);
        let wanted = wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        // Subgroups only for the subgroup variants, which are offered where they exist.
        let wanted = wanted | wgpu::Features::PIPELINE_CACHE | wgpu::Features::SUBGROUP;
        let features = adapter.features() & wanted;
        let info = adapter.get_info();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("sinter"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|source| DeviceError::RequestDevice {
            adapter: report.name.clone(),
            source,
        })?;
        // Neither callback may panic or abort: each records the fault, and the next operation
        // returns it as an error.
        let fault: Arc<Mutex<Option<Fault>>> = Arc::default();
        let record = |fault: &Arc<Mutex<Option<Fault>>>, f: Fault| {
            let mut slot = fault.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(f);
        };
        let on_error = fault.clone();
        device.on_uncaptured_error(Arc::new(move |e| {
            log::error!("uncaptured wgpu error: {e}");
            record(&on_error, Fault::Uncaptured(e.to_string()));
        }));
        let on_lost = fault.clone();
        device.set_device_lost_callback(move |reason, message| {
            log::error!("wgpu device lost ({reason:?}): {message}");
            let why = match reason {
                wgpu::DeviceLostReason::Destroyed => "destroyed",
                wgpu::DeviceLostReason::Unknown => "lost by the driver",
            };
            let detail = if message.is_empty() {
                why.to_string()
            } else {
                format!("{why}: {message}")
            };
            record(&on_lost, Fault::Lost(detail));
        });
        let lose_after_submits = std::env::var(LOSE_DEVICE_ENV)
            .ok()
            .and_then(|v| v.parse().ok());
        log::info!(
            "opened {} ({:?}, {})",
            report.name,
            report.backend,
            report.class
        );
        let pool = BufferPool::new(
            limits
                .max_storage_buffer_binding_size
                .min(limits.max_buffer_size),
        );
        let wide_workgroup =
            crate::limits::wide_workgroup_for(&limits).ok_or_else(|| DeviceError::Limit {
                what: "every kernel family needs workgroups of 64 invocations".into(),
                need: format!(
                "{} per workgroup and {} along x on {} (max_compute_invocations_per_workgroup, \
                 max_compute_workgroup_size_x)",
                limits.max_compute_invocations_per_workgroup,
                limits.max_compute_workgroup_size_x,
                report.name
            ),
            })?;
        let pipeline_cache = if features.contains(wgpu::Features::PIPELINE_CACHE) {
            let dir = crate::canary::cache_dir();
            crate::pipeline_cache::DiskPipelineCache::open(&device, &info, dir.as_deref())
        } else {
            None
        };
        Ok(Self {
            device,
            queue,
            report,
            pipeline_cache,
            wide_workgroup,
            disabled: Default::default(),
            limits,
            modules: Mutex::default(),
            pipelines: Mutex::default(),
            pool,
            staging: Mutex::default(),
            fault,
            submits: AtomicU64::new(0),
            lose_after_submits,
            source_of,
            // Off until the canary has run ([`Gpu::new`]); tests switch it on where they test it.
            tuner: crate::tune::Tuner::new(false, crate::canary::cache_dir()),
        })
    }

    /// The fault the device reported outside an error scope (device lost, uncaptured error), if any.
    pub fn check_fault(&self) -> Result<()> {
        match &*self.fault.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(f) => Err(f.error()),
            None => Ok(()),
        }
    }

    /// Whether the device has been lost (its callback ran).
    pub fn is_lost(&self) -> bool {
        matches!(
            &*self.fault.lock().unwrap_or_else(|p| p.into_inner()),
            Some(Fault::Lost(_))
        )
    }

    /// Destroys the device: every later operation fails with [`DeviceError::DeviceLost`]. The
    /// way to test what a lost device does without waiting for a driver to lose one.
    pub fn destroy(&self) {
        self.device.destroy();
        // The callback runs from a poll once the work in flight is done: wait for it, so the
        // fault is recorded at once.
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
    }

    /// The adapter's API and name, as shader errors name it: `Vulkan (llvmpipe …)`.
    pub fn backend(&self) -> String {
        format!("{:?} ({})", self.report.backend, self.report.name)
    }

    /// The largest storage buffer one binding may hold, in bytes.
    pub fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size
    }

    /// Refuses a buffer larger than the binding limit, naming the op.
    pub fn check_binding(&self, op: &str, bytes: u64) -> Result<()> {
        if bytes > self.max_binding() {
            return Err(DeviceError::BufferTooLarge {
                op: op.to_string(),
                bytes,
                limit: self.max_binding(),
            });
        }
        Ok(())
    }

    /// A storage buffer from the pool, large enough for `len` f32 values. A new buffer is
    /// zeroed; a reused one holds what it last held, so write it before reading it.
    ///
    /// Fails with [`DeviceError::BufferTooLarge`] past the binding limit (naming `op`), with the
    /// device's fault if it was lost, or with [`DeviceError::Gpu`] if the device refuses to create it.
    pub fn buffer(&self, op: &str, len: usize) -> Result<wgpu::Buffer> {
        self.check_fault()?;
        let bytes = (len.max(1) * 4) as u64;
        self.check_binding(op, bytes)?;
        self.pool.acquire(&self.device, op, bytes)
    }

    /// Gives a buffer back to the pool for reuse.
    pub fn recycle(&self, buffer: wgpu::Buffer) {
        self.pool.release(buffer);
    }

    /// Allocation counters of the buffer pool (a steady training loop keeps them flat).
    pub fn pool_stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// A new storage buffer holding `data` (4-byte words: f32, u32 or i32).
    pub fn upload<T: bytemuck::Pod>(&self, op: &str, data: &[T]) -> Result<wgpu::Buffer> {
        let bytes = std::mem::size_of_val(data) as u64;
        let buf = self.buffer(op, (bytes as usize).div_ceil(4))?;
        self.write(&buf, data);
        Ok(buf)
    }

    /// Overwrites the start of `buffer` with `data` (queued; takes effect at the next submit).
    pub fn write<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, data: &[T]) {
        if !data.is_empty() {
            self.queue
                .write_buffer(buffer, 0, bytemuck::cast_slice(data));
        }
    }

    fn module(&self, shader: Shader) -> Result<wgpu::ShaderModule> {
        let mut modules = self.modules.lock().expect("module cache lock");
        if let Some(m) = modules.get(&shader) {
            return Ok(m.clone());
        }
        let module = scoped(&self.device, shader.name(), || {
            self.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name()),
                    source: wgpu::ShaderSource::Wgsl((self.source_of)(shader).into()),
                })
        })
        .map_err(|e| DeviceError::ShaderCompile {
            shader: shader.name(),
            entry: "(module)",
            backend: self.backend(),
            message: e.to_string(),
        })?;
        modules.insert(shader, module.clone());
        Ok(module)
    }

    /// Invocations per workgroup of the families that take the `WG` override
    /// ([`Shader::takes_workgroup_width`]): 256, or 128 or 64 on a device whose limits allow
    /// fewer (WebGPU's compatibility mode and GLES 3.1 guarantee 128).
    pub fn wide_workgroup(&self) -> u32 {
        self.wide_workgroup
    }

    /// The override constants a pipeline of `shader` is compiled with: `overrides`, then `WG`
    /// where the shader takes it.
    fn constants(
        &self,
        shader: Shader,
        overrides: &[(&'static str, f64)],
    ) -> Vec<(&'static str, f64)> {
        let mut constants = overrides.to_vec();
        if shader.takes_workgroup_width() {
            constants.push(("WG", self.wide_workgroup as f64));
        }
        constants
    }

    /// The compute pipeline for (shader, entry point, overrides), compiled on first use and cached.
    pub fn pipeline(
        &self,
        shader: Shader,
        entry: &'static str,
        overrides: &[(&'static str, f64)],
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        let key = PipelineKey {
            shader,
            entry,
            overrides: overrides.iter().map(|&(k, v)| (k, v.to_bits())).collect(),
        };
        if let Some(p) = self
            .pipelines
            .lock()
            .expect("pipeline cache lock")
            .get(&key)
        {
            return Ok(p.clone());
        }
        let module = self.module(shader)?;
        let constants = self.constants(shader, overrides);
        let pipeline = scoped(&self.device, entry, || {
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: None,
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: self.pipeline_cache.as_ref().map(|c| c.cache()),
                })
        })
        .map_err(|e| DeviceError::ShaderCompile {
            shader: shader.name(),
            entry,
            backend: self.backend(),
            message: e.to_string(),
        })?;
        if let Some(cache) = &self.pipeline_cache {
            cache.compiled();
        }
        log::debug!(
            "compiled pipeline {}.wgsl::{entry} {overrides:?}",
            shader.name()
        );
        let pipeline = Arc::new(pipeline);
        self.pipelines
            .lock()
            .expect("pipeline cache lock")
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Prepares a launch: checks its grid against the limits, builds the params uniform and bind group.
    pub fn prepare(&self, launch: Launch<'_>) -> Result<Dispatch> {
        self.check_fault()?;
        let limit = self.limits.max_compute_workgroups_per_dimension;
        if launch.workgroups.iter().any(|&g| g > limit) {
            return Err(DeviceError::DispatchTooLarge {
                op: launch.tag,
                groups: launch.workgroups,
                limit,
            });
        }
        for b in launch.buffers {
            self.check_binding(&launch.tag, b.size())?;
        }
        let storage = self.limits.max_storage_buffers_per_shader_stage;
        if launch.buffers.len() > storage as usize {
            return Err(DeviceError::Limit {
                what: format!(
                    "{}.wgsl::{} ({}) binds {} storage buffers",
                    launch.shader.name(),
                    launch.entry,
                    launch.tag,
                    launch.buffers.len()
                ),
                need: format!(
                    "{storage} per shader stage on {} (max_storage_buffers_per_shader_stage)",
                    self.report.name
                ),
            });
        }
        // Every launch a launcher makes is one it declares, so the portability checks, which
        // compile the declarations, cover what runs (see kernels::specializations).
        #[cfg(debug_assertions)]
        crate::kernels::specializations::assert_declared(
            launch.shader,
            launch.entry,
            launch.overrides,
        );
        let pipeline = self.pipeline(launch.shader, launch.entry, launch.overrides)?;
        let mut words = launch.params.to_vec();
        words.resize(words.len().div_ceil(4).max(1) * 4, 0);
        let params = scoped(&self.device, &launch.tag, || {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("sinter params"),
                    contents: bytemuck::cast_slice(&words),
                    usage: wgpu::BufferUsages::UNIFORM,
                })
        })?;
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: params.as_entire_binding(),
        }];
        entries.extend(
            launch
                .buffers
                .iter()
                .enumerate()
                .map(|(i, b)| wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource: b.as_entire_binding(),
                }),
        );
        let bind_group = scoped(&self.device, &launch.tag, || {
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(&launch.tag),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            })
        })?;
        Ok(Dispatch {
            pipeline,
            bind_group,
            workgroups: launch.workgroups,
            entry: launch.entry,
            shader: launch.shader,
            tag: launch.tag,
            flops: launch.flops,
            bytes: launch.bytes,
            constants: self.constants(launch.shader, launch.overrides),
            params: words,
            buffers: launch.buffers.iter().map(|&b| b.clone()).collect(),
        })
    }

    /// Records `dispatches` in order into `encoder`, in one compute pass.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder, dispatches: &[&Dispatch]) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("sinter step"),
            timestamp_writes: None,
        });
        for d in dispatches {
            d.encode(&mut pass);
        }
    }

    /// Runs `dispatches` (one encoder, one submit), then reads back `reads`: (buffer, f32 count).
    pub fn run(
        &self,
        dispatches: &[&Dispatch],
        reads: &[(&wgpu::Buffer, usize)],
    ) -> Result<Vec<Vec<f32>>> {
        let submitted = self.submit(dispatches, reads)?;
        self.wait(submitted)
    }

    /// Records `dispatches` and copies of `reads` into staging buffers in one encoder, submits
    /// it and returns without waiting: [`Gpu::wait`] maps the copies once the GPU is done. Work
    /// submitted later runs after it (one queue), so several steps can be in flight while the
    /// host prepares the next; each submission has staging buffers of its own.
    pub fn submit(
        &self,
        dispatches: &[&Dispatch],
        reads: &[(&wgpu::Buffer, usize)],
    ) -> Result<Submitted> {
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("sinter"),
            });
        self.record(&mut encoder, dispatches);
        log::debug!(
            "submitting {} dispatches in one command encoder",
            dispatches.len()
        );
        self.finish(encoder, reads)
    }

    /// Copies `reads` into staging buffers at the end of `encoder`, submits, and maps them.
    /// Waiting is done by blocking on the device poll and a channel, never by spinning.
    pub fn finish_and_read(
        &self,
        encoder: wgpu::CommandEncoder,
        reads: &[(&wgpu::Buffer, usize)],
    ) -> Result<Vec<Vec<f32>>> {
        let submitted = self.finish(encoder, reads)?;
        self.wait(submitted)
    }

    /// Copies `reads` into staging buffers at the end of `encoder` and submits, without waiting.
    fn finish(
        &self,
        mut encoder: wgpu::CommandEncoder,
        reads: &[(&wgpu::Buffer, usize)],
    ) -> Result<Submitted> {
        self.check_fault()?;
        let submits = self.submits.fetch_add(1, Ordering::Relaxed) + 1;
        if self.lose_after_submits.is_some_and(|n| submits > n) {
            log::warn!("{LOSE_DEVICE_ENV}: destroying the device before submit {submits}");
            self.destroy();
        }
        let submit = || -> Result<Submitted> {
            let staging = reads
                .iter()
                .map(|&(_, len)| Ok((self.staging_buffer((len.max(1) * 4) as u64)?, len)))
                .collect::<Result<Vec<(wgpu::Buffer, usize)>>>()?;
            for (&(src, len), (dst, _)) in reads.iter().zip(&staging) {
                encoder.copy_buffer_to_buffer(src, 0, dst, 0, Some((len * 4) as u64));
            }
            let index = scoped(&self.device, "submit", || {
                self.queue.submit([encoder.finish()])
            })?;
            Ok(Submitted { index, staging })
        };
        // Whatever failed, a fault the device reported says best what happened (a lost
        // device's callback runs once the steps in flight are done: wait for them).
        submit().map_err(|e| {
            let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
            self.check_fault().err().unwrap_or(e)
        })
    }

    /// Waits for a submission from [`Gpu::submit`] (only for it: later ones keep running) and
    /// returns its reads, in the order they were asked for.
    pub fn wait(&self, submitted: Submitted) -> Result<Vec<Vec<f32>>> {
        let Submitted { index, staging } = submitted;
        let read = || -> Result<Vec<Vec<f32>>> {
            let receivers: Vec<_> = staging
                .iter()
                .map(|(buf, len)| {
                    let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
                    if *len > 0 {
                        buf.slice(..(len * 4) as u64)
                            .map_async(wgpu::MapMode::Read, move |r| {
                                // The receiver lives until the result is read: no send is lost.
                                let _ = sender.send(r);
                            });
                    }
                    receiver
                })
                .collect();
            self.device
                .poll(wgpu::PollType::Wait {
                    submission_index: Some(index),
                    timeout: None,
                })
                .map_err(|e| DeviceError::Map(e.to_string()))?;
            let mut out = Vec::with_capacity(staging.len());
            for ((buf, len), receiver) in staging.iter().zip(receivers) {
                if *len == 0 {
                    out.push(Vec::new());
                    continue;
                }
                match pollster::block_on(receiver.receive()) {
                    Some(Ok(())) => {}
                    Some(Err(e)) => return Err(DeviceError::Map(e.to_string())),
                    None => return Err(DeviceError::Map("map callback dropped".into())),
                }
                out.push(read_mapped(buf, *len)?);
            }
            Ok(out)
        };
        let result = read();
        // Every buffer is unmapped again after a complete read; after a failed one some may still
        // be mapped or mapping, and are dropped rather than reused.
        if result.is_ok() {
            let mut pool = self.staging.lock().expect("staging lock");
            for (buf, _) in staging {
                pool.entry(buf.size()).or_default().push(buf);
            }
        }
        // Whatever failed, a fault the device reported says best what happened.
        result
            .and_then(|out| self.check_fault().map(|()| out))
            .map_err(|e| self.check_fault().err().unwrap_or(e))
    }

    /// Reads `len` f32 values from the start of a storage buffer.
    pub fn read(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        let encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("sinter read"),
            });
        Ok(self
            .finish_and_read(encoder, &[(buffer, len)])?
            .pop()
            .expect("one read requested"))
    }

    fn staging_buffer(&self, bytes: u64) -> Result<wgpu::Buffer> {
        let class = crate::pool::size_class(bytes, self.limits.max_buffer_size);
        if let Some(b) = self
            .staging
            .lock()
            .expect("staging lock")
            .get_mut(&class)
            .and_then(Vec::pop)
        {
            return Ok(b);
        }
        scoped(&self.device, "staging buffer for a readback", || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("sinter staging"),
                size: class,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }
}

impl Drop for Gpu {
    /// Keeps the pipelines compiled since the last write for the next run.
    fn drop(&mut self) {
        self.persist_pipelines();
    }
}
