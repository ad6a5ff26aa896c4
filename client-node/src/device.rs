//! Where tensors live: the CPU by default, the first CUDA GPU with the `cuda` feature.
//!
//! This is the only place a device is chosen. Building with `--features cuda` needs the
//! CUDA toolkit (nvcc) at build time and a GPU at run time; without the feature no CUDA
//! code is compiled at all.

use candle_core::Device;

/// The device models are built on.
///
/// Without the `cuda` feature this is always the CPU. With it, GPU `ordinal` 0 is used
/// when the driver reports one, else the CPU (candle's `cuda_if_available`).
// Limitation: the `cuda` feature has never been built or run in CI (no CUDA toolkit on
// the build machines); a GPU runner building `--features cuda` would lift this.
pub fn default_device() -> candle_core::Result<Device> {
    #[cfg(feature = "cuda")]
    {
        Device::cuda_if_available(0)
    }
    #[cfg(not(feature = "cuda"))]
    {
        Ok(Device::Cpu)
    }
}

/// Threads candle's CPU kernels use: `RAYON_NUM_THREADS` when set, else every core.
pub fn cpu_threads() -> usize {
    candle_core::utils::get_num_threads()
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(not(feature = "cuda"))]
    fn cpu_by_default() {
        assert!(super::default_device().unwrap().is_cpu());
    }
}
