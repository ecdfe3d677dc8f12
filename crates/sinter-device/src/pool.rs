//! A pool of GPU storage buffers reused by size class, so that a steady training loop allocates
//! nothing: buffers are returned to the pool and handed out again for requests of the same class.

use crate::error::Result;
use crate::gpu::scoped;
use std::collections::HashMap;
use std::sync::Mutex;

/// Rounds a request up to its size class: powers of two and the midpoints between them
/// (…, 4096, 6144, 8192, 12288, …), so at most a third of a buffer is slack.
pub fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    let pow = bytes.next_power_of_two();
    let mid = pow / 4 * 3;
    if bytes <= mid {
        mid
    } else {
        pow
    }
}

#[derive(Default)]
struct PoolInner {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    allocations: u64,
    bytes_allocated: u64,
}

/// Storage buffers (STORAGE | COPY_SRC | COPY_DST) by size class.
#[derive(Default)]
pub struct BufferPool {
    inner: Mutex<PoolInner>,
}

/// Counters of the pool, for tests and the soak benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers created since the pool was made.
    pub allocations: u64,
    /// Bytes of all buffers created since the pool was made.
    pub bytes_allocated: u64,
    /// Buffers sitting in the pool, free for reuse.
    pub free_buffers: u64,
}

impl BufferPool {
    /// A buffer of at least `bytes` (rounded up to its [`size_class`]): a free one of that class
    /// if the pool holds one, else a new one, created inside an error scope so that a refusal is
    /// an error naming `op`, not a fault of the whole device. Its contents are whatever it last held.
    pub fn acquire(&self, device: &wgpu::Device, op: &str, bytes: u64) -> Result<wgpu::Buffer> {
        let class = size_class(bytes);
        let mut inner = self.inner.lock().expect("buffer pool lock");
        if let Some(buf) = inner.free.get_mut(&class).and_then(Vec::pop) {
            return Ok(buf);
        }
        let what = format!("{op}: creating a storage buffer of {class} bytes");
        let buffer = scoped(device, &what, || {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("sinter pooled storage"),
                size: class,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        inner.allocations += 1;
        inner.bytes_allocated += class;
        Ok(buffer)
    }

    /// Returns a buffer for reuse; it must have come from [`BufferPool::acquire`] (its size is
    /// its class).
    pub fn release(&self, buffer: wgpu::Buffer) {
        let mut inner = self.inner.lock().expect("buffer pool lock");
        inner.free.entry(buffer.size()).or_default().push(buffer);
    }

    /// The counters so far.
    pub fn stats(&self) -> PoolStats {
        let inner = self.inner.lock().expect("buffer pool lock");
        PoolStats {
            allocations: inner.allocations,
            bytes_allocated: inner.bytes_allocated,
            free_buffers: inner.free.values().map(|v| v.len() as u64).sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_the_request_with_bounded_slack() {
        for bytes in [
            1u64,
            255,
            256,
            257,
            1000,
            4096,
            5000,
            6144,
            6145,
            1 << 20,
            3 << 20,
        ] {
            let c = size_class(bytes);
            assert!(c >= bytes, "class {c} smaller than request {bytes}");
            assert!(
                c <= (bytes.max(256) * 3).div_ceil(2),
                "class {c} too loose for {bytes}"
            );
            assert_eq!(c % 64, 0, "class {c} not 64-byte aligned");
        }
    }
}
