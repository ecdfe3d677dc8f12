//! A pool of GPU storage buffers reused by size class, so that a steady training loop allocates
//! nothing: buffers are returned to the pool and handed out again for requests of the same class.

use crate::error::Result;
use crate::gpu::scoped;
use std::collections::HashMap;
use std::sync::Mutex;

/// Rounds a request up to its size class: powers of two and the midpoints between them
/// (…, 4096, 6144, 8192, 12288, …), so at most a third of a buffer is slack; but never past
/// `limit` (the device's largest buffer or binding, rounded down to 4 bytes), so that a request
/// that fits under a limit that is not a power of two still fits once rounded: such requests all
/// get the class `limit` itself. A request past `limit` keeps its plain class (and is refused).
pub fn size_class(bytes: u64, limit: u64) -> u64 {
    let bytes = bytes.max(256);
    let pow = bytes.next_power_of_two();
    let mid = pow / 4 * 3;
    let class = if bytes <= mid { mid } else { pow };
    let cap = limit & !3;
    if class > cap && bytes <= cap {
        cap
    } else {
        class
    }
}

#[derive(Default)]
struct PoolInner {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    allocations: u64,
    bytes_allocated: u64,
}

/// Storage buffers (STORAGE | COPY_SRC | COPY_DST) by size class.
pub struct BufferPool {
    inner: Mutex<PoolInner>,
    /// No size class rounds past this: the smaller of the buffer and binding limits.
    limit: u64,
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
    /// An empty pool whose size classes never round past `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self {
            inner: Mutex::default(),
            limit,
        }
    }

    /// A buffer of at least `bytes` (rounded up to its [`size_class`]): a free one of that class
    /// if the pool holds one, else a new one, created inside an error scope so that a refusal is
    /// an error naming `op`, not a fault of the whole device. Its contents are whatever it last held.
    pub fn acquire(&self, device: &wgpu::Device, op: &str, bytes: u64) -> Result<wgpu::Buffer> {
        let class = size_class(bytes, self.limit);
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
    fn no_class_rounds_past_the_limit() {
        // A binding limit that is not a power of two (100 MB), and requests just under it: the
        // plain classes would be 2^27 bytes, past the limit, and prepare() would refuse them.
        let limit = 100_000_000u64;
        for bytes in [75_497_476u64, 90_000_000, 99_999_996, 100_000_000] {
            let c = size_class(bytes, limit);
            assert!(
                c >= bytes && c <= limit,
                "class {c} for {bytes} under {limit}"
            );
            assert_eq!(c % 4, 0, "class {c} is not a whole number of words");
        }
        // The limit rounded down to a word: 4-byte alignment is what bindings need.
        assert_eq!(size_class(100_000_000, 100_000_003), 100_000_000);
        // Past the limit, the class is unchanged (the request is refused elsewhere).
        assert_eq!(
            size_class(100_000_004, limit),
            size_class(100_000_004, u64::MAX)
        );
        // Under a power-of-two limit nothing changes.
        assert_eq!(size_class(5000, 1 << 27), 6144);
    }

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
            let c = size_class(bytes, u64::MAX);
            assert!(c >= bytes, "class {c} smaller than request {bytes}");
            assert!(
                c <= (bytes.max(256) * 3).div_ceil(2),
                "class {c} too loose for {bytes}"
            );
            assert_eq!(c % 64, 0, "class {c} not 64-byte aligned");
        }
    }
}
