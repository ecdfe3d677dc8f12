//! What a submission leaves to read back: [`Submitted`] (its queue index and staging buffers)
//! and the copy out of a mapped staging buffer; `Gpu::submit` and `Gpu::wait` use them.

use crate::error::{DeviceError, Result};

/// The first `len` f32 values of a mapped staging buffer, which is unmapped after.
pub(crate) fn read_mapped(buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
    let slice = buffer.slice(..(len * 4) as u64);
    let data = {
        let view = slice
            .get_mapped_range()
            .map_err(|e| DeviceError::Map(e.to_string()))?;
        bytemuck::cast_slice::<u8, f32>(&view).to_vec()
    };
    buffer.unmap();
    Ok(data)
}

/// A submission in flight ([`crate::Gpu::submit`]): its index on the queue and the staging buffers
/// its reads are copied into. [`crate::Gpu::wait`] hands back the values; dropped unread, the buffers
/// are freed.
#[must_use = "a submitted step's outputs are read with Gpu::wait"]
pub struct Submitted {
    pub(crate) index: wgpu::SubmissionIndex,
    pub(crate) staging: Vec<(wgpu::Buffer, usize)>,
}
