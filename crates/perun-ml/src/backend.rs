//! The one place where the compute device is chosen.
//!
//! Default: Burn's `flex` backend, pure Rust on the CPU, deterministic for a fixed seed.
//! With the `wgpu` feature and `PERUN_DEVICE=gpu`, training runs on the first discrete
//! GPU through wgpu (Vulkan on NVIDIA). Adding another backend (for example LibTorch
//! through `burn-tch`) means adding a feature and a branch here, nothing else.

use burn::tensor::Device;

/// Which device to compute on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compute {
    /// The CPU (`flex`).
    Cpu,
    /// A GPU (requires the `wgpu` feature).
    Gpu,
}

impl Compute {
    /// From `PERUN_DEVICE` (`cpu`, the default, or `gpu`).
    pub fn from_env() -> Self {
        match std::env::var("PERUN_DEVICE").as_deref() {
            Ok("gpu") => Self::Gpu,
            _ => Self::Cpu,
        }
    }
}

/// The device for `compute`, or an error that says how to get it.
pub fn device(compute: Compute) -> Result<Device, crate::MlError> {
    match compute {
        Compute::Cpu => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        Compute::Gpu => {
            // Ask first: acquiring a device where there is no adapter panics inside the
            // runtime instead of returning an error.
            if Device::enumerate(burn::tensor::DeviceType::Wgpu).into_vec().is_empty() {
                return Err(crate::MlError::Backend(
                    "no GPU adapter found through wgpu: install the GPU's Vulkan driver (for NVIDIA: the driver's \
                     Vulkan ICD with libnvidia-glvkspirv), or use --device cpu"
                        .into(),
                ));
            }
            Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
        }
        #[cfg(not(feature = "wgpu"))]
        Compute::Gpu => Err(crate::MlError::Backend(
            "this build has no GPU backend: rebuild perun with `--features gpu` (perun-ml: `wgpu`)".into(),
        )),
    }
}

/// A short description of the device, for reports.
pub fn describe(compute: Compute) -> &'static str {
    match compute {
        Compute::Cpu => "cpu (burn flex)",
        Compute::Gpu => "gpu (burn wgpu)",
    }
}
