//! The driver's compiled pipelines kept on disk between runs (wgpu's `PIPELINE_CACHE`, Vulkan
//! only), so a second run does not compile its kernels again: loaded when a device opens, written
//! back atomically once new pipelines were compiled.
//!
//! The file is `pipelines/<wgpu's key for the adapter>.bin` in the canary's cache folder
//! ([`crate::canary::cache_dir`]), a CRC-32 of the data ahead of wgpu's bytes: a damaged file is
//! ignored with a warning (and replaced at the next write), never handed to the driver.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// A device's pipeline cache and the file it persists to.
pub struct DiskPipelineCache {
    cache: wgpu::PipelineCache,
    file: PathBuf,
    /// Pipelines were compiled into the cache since it was loaded or last written.
    changed: AtomicBool,
    /// Bytes of cached data loaded from the file when the device opened (0: a cold start).
    loaded: usize,
}

impl DiskPipelineCache {
    /// The cache for `device` (opened with [`wgpu::Features::PIPELINE_CACHE`]) on the adapter
    /// `info` describes, loaded from `dir` when it holds a valid file. `None` where wgpu has no
    /// cache key for the backend (every backend but Vulkan) or no folder is given.
    pub fn open(
        device: &wgpu::Device,
        info: &wgpu::AdapterInfo,
        dir: Option<&Path>,
    ) -> Option<Self> {
        let key = wgpu::util::pipeline_cache_key(info)?;
        let file = dir?.join("pipelines").join(format!("{key}.bin"));
        let data = read(&file);
        // SAFETY: `data` is what `PipelineCache::get_data` returned in an earlier run (written
        // by `persist` behind a CRC-32 that `read` has checked, so not damaged on disk); wgpu
        // checks its own header (adapter, driver, ABI) and with `fallback` starts an empty
        // cache where it does not match.
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("sinter pipelines"),
                data: data.as_deref(),
                fallback: true,
            })
        };
        Some(Self {
            cache,
            file,
            changed: AtomicBool::new(false),
            loaded: data.map_or(0, |d| d.len()),
        })
    }

    /// The cache to compile pipelines through.
    pub fn cache(&self) -> &wgpu::PipelineCache {
        &self.cache
    }

    /// Notes that a pipeline was compiled through the cache (so [`Self::persist`] writes).
    pub fn compiled(&self) {
        self.changed.store(true, Ordering::Relaxed);
    }

    /// Bytes loaded from disk when the device opened; 0 on a cold start.
    pub fn loaded_bytes(&self) -> usize {
        self.loaded
    }

    /// The file the cache is kept in.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Writes the cache to its file (through a temporary file renamed over it) when pipelines
    /// were compiled since the last write; returns whether it wrote.
    pub fn persist(&self) -> std::io::Result<bool> {
        if !self.changed.swap(false, Ordering::Relaxed) {
            return Ok(false);
        }
        let Some(data) = self.cache.get_data() else {
            return Ok(false);
        };
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut bytes = crc32fast::hash(&data).to_le_bytes().to_vec();
        bytes.extend_from_slice(&data);
        let tmp = self
            .file
            .with_extension(format!("bin.tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &self.file)?;
        Ok(true)
    }
}

/// The cached data in `file` if it exists and its CRC-32 matches; a damaged file costs a warning.
fn read(file: &Path) -> Option<Vec<u8>> {
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            log::warn!("ignoring the pipeline cache {}: {e}", file.display());
            return None;
        }
    };
    let valid = bytes.len() >= 4 && {
        let (sum, data) = bytes.split_at(4);
        u32::from_le_bytes(sum.try_into().expect("4 bytes")) == crc32fast::hash(data)
    };
    if !valid {
        log::warn!(
            "ignoring the pipeline cache {}: damaged (checksum mismatch); it will be rewritten",
            file.display()
        );
        return None;
    }
    Some(bytes[4..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{pick_adapter, DeviceChoice};
    use crate::testing::REQUIRE_ENV;

    /// On a Vulkan adapter: a device writes its compiled pipelines to the cache file, and the
    /// next device on the adapter starts from them.
    #[test]
    fn compiled_pipelines_are_kept_for_the_next_device() {
        let Some(adapter) = pick_adapter(DeviceChoice::Software).ok().flatten() else {
            let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v != "0" && !v.is_empty());
            assert!(
                !required,
                "{REQUIRE_ENV} is set but no software adapter was found"
            );
            return;
        };
        let vulkan = adapter.get_info().backend == wgpu::Backend::Vulkan;
        let limits = crate::limits::requested(&adapter.limits());
        let gpu = crate::Gpu::open(adapter, limits.clone(), crate::Shader::source).unwrap();
        let Some(cache) = gpu.pipeline_cache() else {
            assert!(!vulkan, "a Vulkan device without a pipeline cache");
            return;
        };
        gpu.pipeline(crate::Shader::Reduce, "reduce_rows", &[("OP", 0.0)])
            .unwrap();
        assert!(cache.persist().unwrap(), "a new pipeline was not written");
        assert!(!cache.persist().unwrap(), "written again with nothing new");
        let kept = read(cache.file()).expect("a valid cache file");
        assert!(!kept.is_empty());

        let adapter = pick_adapter(DeviceChoice::Software).unwrap().unwrap();
        let again = crate::Gpu::open(adapter, limits, crate::Shader::source).unwrap();
        assert!(again.pipeline_cache().unwrap().loaded_bytes() > 0);
    }

    #[test]
    fn a_damaged_or_missing_file_is_not_read() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp/pipeline-cache-unit");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("x.bin");
        let _ = std::fs::remove_file(&file);
        assert_eq!(read(&file), None);
        let data = b"compiled pipelines".to_vec();
        let mut bytes = crc32fast::hash(&data).to_le_bytes().to_vec();
        bytes.extend_from_slice(&data);
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(read(&file), Some(data));
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(read(&file), None);
        std::fs::write(&file, [1u8, 2]).unwrap();
        assert_eq!(read(&file), None);
    }
}
