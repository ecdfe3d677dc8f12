//! What the kernels need of a device's limits, and what the engine does where a device has less:
//! narrower workgroups, another matrix-product variant, tensors split or refused by name.

/// The most storage buffers one kernel binds (attention's backward: q, k, v, do, lse, o or delta,
/// and its outputs). WebGPU's default is 8; GLES 3.1 guarantees only 4.
pub const MOST_STORAGE_BUFFERS: u32 = 8;

/// The workgroup width of the families that take the `WG` override: the widest of 256, 128 and
/// 64 invocations that `limits` allow along x; `None` below 64, which the fixed-width kernels
/// (matmul v2, convolution, pooling, attention) need.
pub fn wide_workgroup_for(limits: &wgpu::Limits) -> Option<u32> {
    let most = limits
        .max_compute_invocations_per_workgroup
        .min(limits.max_compute_workgroup_size_x);
    [256, 128, 64].into_iter().find(|&w| w <= most)
}

/// The limits a device on an adapter with `adapter` limits is requested with: WebGPU's defaults
/// (what every WebGPU implementation grants unasked, and all the kernels need: 256 invocations
/// per workgroup, 8 storage buffers, 16 KiB of workgroup memory), lowered to the adapter's where
/// it has less, and raised to the adapter's only for the sizes a plan's tensors and grids may
/// need, which are not known when the device opens (buffer and binding sizes, workgroups per
/// dimension): a plan larger than those is refused before step 1, naming the op and its size.
pub fn requested(adapter: &wgpu::Limits) -> wgpu::Limits {
    let mut limits = wgpu::Limits::default().or_worse_values_from(adapter);
    limits.max_buffer_size = adapter.max_buffer_size;
    limits.max_storage_buffer_binding_size = adapter.max_storage_buffer_binding_size;
    limits.max_compute_workgroups_per_dimension = adapter.max_compute_workgroups_per_dimension;
    limits
}

/// Each limit of `limits` below what the kernels were built for, with what the engine does about
/// it; empty when the device has all they need.
pub fn shortfalls(limits: &wgpu::Limits) -> Vec<String> {
    let mut out = Vec::new();
    let invocations = limits
        .max_compute_invocations_per_workgroup
        .min(limits.max_compute_workgroup_size_x);
    match wide_workgroup_for(limits) {
        None => out.push(format!(
            "{invocations} invocations per workgroup: below the 64 every kernel family needs; \
             a device on this adapter is refused"
        )),
        Some(w) if w < 256 => out.push(format!(
            "{invocations} invocations per workgroup (256 wanted): elementwise, reduction, \
             softmax, norm, loss, embedding, selection and optimizer kernels run in workgroups \
             of {w}, and matrix products use v2 (64 invocations) instead of v3 (256)"
        )),
        Some(_) => {}
    }
    let storage = limits.max_storage_buffers_per_shader_stage;
    if storage < MOST_STORAGE_BUFFERS {
        out.push(format!(
            "{storage} storage buffers per shader stage ({MOST_STORAGE_BUFFERS} wanted): a kernel \
             that binds more (attention's backward binds {MOST_STORAGE_BUFFERS}, matrix products \
             with a bias 4) is refused before its pipeline is made, with an error naming it"
        ));
    }
    let binding = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    if binding < 1 << 30 {
        out.push(format!(
            "{} MiB per storage binding: a tensor larger than that is split where the op allows \
             (GPT-2's LM head and loss run in chunks of rows) and otherwise refused before \
             step 1, naming the op and its size",
            binding >> 20
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workgroup_width_follows_the_invocation_limits() {
        let with = |inv: u32, x: u32| wgpu::Limits {
            max_compute_invocations_per_workgroup: inv,
            max_compute_workgroup_size_x: x,
            ..wgpu::Limits::default()
        };
        assert_eq!(wide_workgroup_for(&with(1024, 1024)), Some(256));
        assert_eq!(wide_workgroup_for(&with(256, 256)), Some(256));
        assert_eq!(wide_workgroup_for(&with(256, 128)), Some(128));
        assert_eq!(wide_workgroup_for(&with(128, 128)), Some(128));
        assert_eq!(wide_workgroup_for(&with(100, 1024)), Some(64));
        assert_eq!(wide_workgroup_for(&with(32, 32)), None);
    }

    #[test]
    fn a_device_is_requested_with_what_the_kernels_and_tensors_need() {
        let big = wgpu::Limits {
            max_compute_invocations_per_workgroup: 1024,
            max_compute_workgroup_size_x: 1024,
            max_storage_buffers_per_shader_stage: 64,
            max_compute_workgroup_storage_size: 65536,
            max_storage_buffer_binding_size: 2 << 30,
            max_buffer_size: 4 << 30,
            max_compute_workgroups_per_dimension: 1 << 20,
            ..wgpu::Limits::default()
        };
        let want = requested(&big);
        assert!(want.check_limits(&big));
        // The kernels' needs, not the adapter's most.
        assert_eq!(want.max_compute_invocations_per_workgroup, 256);
        assert_eq!(want.max_compute_workgroup_size_x, 256);
        assert_eq!(
            want.max_storage_buffers_per_shader_stage,
            MOST_STORAGE_BUFFERS
        );
        assert_eq!(want.max_compute_workgroup_storage_size, 16384);
        // Tensor and grid sizes: the adapter's.
        assert_eq!(want.max_storage_buffer_binding_size, 2 << 30);
        assert_eq!(want.max_buffer_size, 4 << 30);
        assert_eq!(want.max_compute_workgroups_per_dimension, 1 << 20);
        // An adapter with less than WebGPU's defaults (GLES 3.1's minimums) is asked for no more
        // than it has.
        let gles = wgpu::Limits {
            max_compute_invocations_per_workgroup: 128,
            max_compute_workgroup_size_x: 128,
            max_storage_buffers_per_shader_stage: 4,
            ..wgpu::Limits::downlevel_defaults()
        };
        let want = requested(&gles);
        assert!(want.check_limits(&gles));
        assert_eq!(want.max_compute_invocations_per_workgroup, 128);
        assert_eq!(want.max_storage_buffers_per_shader_stage, 4);
        assert_eq!(wide_workgroup_for(&want), Some(128));
    }

    #[test]
    fn shortfalls_name_the_limit_and_what_is_done() {
        let big = wgpu::Limits {
            max_storage_buffer_binding_size: 2 << 30,
            max_buffer_size: 4 << 30,
            ..wgpu::Limits::default()
        };
        assert!(shortfalls(&big).is_empty(), "{:?}", shortfalls(&big));
        // WebGPU's defaults: 128 MiB bindings.
        let web = shortfalls(&wgpu::Limits::default());
        assert_eq!(web.len(), 1, "{web:?}");
        assert!(web[0].starts_with("128 MiB per storage binding"), "{web:?}");
        // GLES 3.1's minimums.
        let gles = shortfalls(&wgpu::Limits {
            max_compute_invocations_per_workgroup: 128,
            max_compute_workgroup_size_x: 128,
            max_storage_buffers_per_shader_stage: 4,
            ..big
        });
        assert_eq!(gles.len(), 2, "{gles:?}");
        assert!(gles[0].contains("workgroups of 128") && gles[0].contains("v2"));
        assert!(gles[1].starts_with("4 storage buffers") && gles[1].contains("refused"));
        let tiny = shortfalls(&wgpu::Limits {
            max_compute_invocations_per_workgroup: 32,
            ..big
        });
        assert!(tiny[0].contains("refused"), "{tiny:?}");
    }
}
