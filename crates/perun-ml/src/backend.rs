//! The one place where the compute device and the engine are chosen.
//!
//! Two engines run Perun's networks, through Burn's dispatch backend:
//! - **flex**, Burn's pure-Rust CPU backend: in every build, deterministic for a fixed
//!   seed, and the faster one where a training step is small (each op costs little);
//! - **LibTorch** (the `libtorch` feature, through `burn-tch`): PyTorch's own kernels,
//!   on the CPU and, with `libtorch-cuda`, on an NVIDIA GPU. It is the faster one where a
//!   step is large: convolutions and wide layers.
//!
//! Which one trains a workload is decided by [`Engine::for_workload`], a rule from
//! measurement (README, "Training engines"): LibTorch where a training step's forward
//! pass reaches [`LIBTORCH_MIN_MACS`] multiply-accumulates, flex below. The GPU is
//! reached through LibTorch only: one GPU path that is measured, not two.

use burn::tensor::Device;

use crate::spec::ModelSpec;
use crate::MlError;

/// Where to compute, and with which engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compute {
    /// The CPU, with the engine [`Engine::for_workload`] picks for the model.
    Cpu,
    /// The CPU with this engine, whatever the rule says (benchmarks, the engines'
    /// agreement test). An engine this build does not carry is an error.
    CpuWith(Engine),
    /// The first CUDA GPU, through LibTorch (the `libtorch-cuda` feature).
    Gpu,
}

/// A training engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Burn's `flex` backend: pure Rust, CPU.
    Flex,
    /// LibTorch through `burn-tch`: CPU, or CUDA with `libtorch-cuda`.
    LibTorch,
}

/// The smallest forward pass per training step, in multiply-accumulates, that trains
/// faster on LibTorch than on flex. Measured on 2 idle cores (2026-12-07): the
/// CIFAR-shaped CNN at 25 M MACs per sample trains 2.1x faster on LibTorch at batch 1 and
/// 4.9x at batch 64 (`perun bench train --batch B --engine E`); the digits CNN (174 k per
/// sample) trains as fast on both at batches 1-8 (0.17-1.4 M per step) and 1.9x faster on
/// LibTorch at batch 32 (5.6 M); the breast-cancer MLP (1.5 k per sample) trains 2-4x
/// faster on flex at batches 32 and 256 (48 k, 385 k; `perun bench dp --engine E`: 3.8x
/// plain, 3.4x under DP-SGD). LibTorch's OpenMP threads also fall far behind when other
/// work shares the cores (the CNN at batch 1 then ran 3.7x slower than on flex).
pub const LIBTORCH_MIN_MACS: u64 = 1_000_000;

/// The version of the libtorch this build links (from its headers), or `None`.
pub const LIBTORCH_VERSION: Option<&str> = option_env!("PERUN_LIBTORCH_VERSION");

impl Engine {
    /// The engines this build carries, flex first.
    pub fn carried() -> &'static [Engine] {
        if cfg!(feature = "libtorch") {
            &[Engine::Flex, Engine::LibTorch]
        } else {
            &[Engine::Flex]
        }
    }

    /// The engine for training (or evaluating) `spec` on the CPU: LibTorch where this
    /// build carries it and a step's forward pass has at least [`LIBTORCH_MIN_MACS`]
    /// multiply-accumulates (per sample times batch, or per sample alone under DP-SGD,
    /// which computes each sample's gradient apart); flex otherwise. A spec that does not
    /// validate gets flex, whose checks then say what is wrong.
    pub fn for_workload(spec: &ModelSpec) -> Engine {
        if !cfg!(feature = "libtorch") {
            return Engine::Flex;
        }
        let Ok(per_sample) = spec.macs_per_sample() else { return Engine::Flex };
        let t = &spec.training;
        let per_step = if t.privacy.is_some() { 1 } else { t.batch_size as u64 };
        if per_sample.saturating_mul(per_step) >= LIBTORCH_MIN_MACS {
            Engine::LibTorch
        } else {
            Engine::Flex
        }
    }

    /// The engine's name as `--engine` and `PERUN_ENGINE` take it.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Flex => "flex",
            Engine::LibTorch => "libtorch",
        }
    }

    /// The engine named `name` (`flex` or `libtorch`), or `None`.
    pub fn from_name(name: &str) -> Option<Engine> {
        match name {
            "flex" => Some(Engine::Flex),
            "libtorch" => Some(Engine::LibTorch),
            _ => None,
        }
    }
}

impl Compute {
    /// From the environment: `PERUN_DEVICE` (`cpu`, the default, or `gpu`) and, on the
    /// CPU, `PERUN_ENGINE` (`flex` or `libtorch`; unset: the workload rule).
    ///
    /// # Errors
    /// [`MlError::Backend`] for a value it does not know, rather than a silent default.
    pub fn from_env() -> Result<Self, MlError> {
        let device = std::env::var("PERUN_DEVICE").unwrap_or_default();
        let engine = std::env::var("PERUN_ENGINE").unwrap_or_default();
        let engine = match engine.as_str() {
            "" => None,
            name => Some(
                Engine::from_name(name)
                    .ok_or_else(|| MlError::Backend(format!("PERUN_ENGINE={name:?}: expected flex or libtorch")))?,
            ),
        };
        match device.as_str() {
            "" | "cpu" => Self::new(false, engine),
            "gpu" => Self::new(true, engine),
            other => Err(MlError::Backend(format!("PERUN_DEVICE={other:?}: expected cpu or gpu"))),
        }
    }

    /// The CPU or the GPU, with `engine` or (`None`) the workload rule's.
    ///
    /// # Errors
    /// [`MlError::Backend`] for flex on the GPU: the GPU is reached through LibTorch only.
    pub fn new(gpu: bool, engine: Option<Engine>) -> Result<Self, MlError> {
        match (gpu, engine) {
            (false, None) => Ok(Compute::Cpu),
            (false, Some(e)) => Ok(Compute::CpuWith(e)),
            (true, None | Some(Engine::LibTorch)) => Ok(Compute::Gpu),
            (true, Some(Engine::Flex)) => Err(MlError::Backend(
                "the flex engine runs on the CPU only: the GPU is reached through LibTorch".into(),
            )),
        }
    }

    /// The engine that computes `spec` here.
    pub fn engine(self, spec: &ModelSpec) -> Engine {
        match self {
            Compute::Cpu => Engine::for_workload(spec),
            Compute::CpuWith(engine) => engine,
            Compute::Gpu => Engine::LibTorch,
        }
    }
}

/// A device and the engine behind it.
#[derive(Clone, Debug)]
pub struct Placement {
    /// The engine.
    pub engine: Engine,
    /// Burn's device for it.
    pub device: Device,
    /// Whether it is a GPU.
    pub gpu: bool,
}

impl Placement {
    /// A short description for reports: `cpu (burn flex)`, `cpu (libtorch 2.11.0)`, ...
    pub fn describe(&self) -> String {
        let version = LIBTORCH_VERSION.unwrap_or("?");
        match (self.engine, self.gpu) {
            (Engine::Flex, _) => "cpu (burn flex)".into(),
            (Engine::LibTorch, false) => format!("cpu (libtorch {version})"),
            (Engine::LibTorch, true) => format!("gpu (libtorch {version}, cuda)"),
        }
    }
}

/// The device that computes `spec` under `compute`, or an error that says how to get it.
///
/// # Errors
/// [`MlError::Backend`] where this build does not carry the engine, or asked for a GPU
/// that LibTorch cannot see.
pub fn place(compute: Compute, spec: &ModelSpec) -> Result<Placement, MlError> {
    let engine = compute.engine(spec);
    let gpu = compute == Compute::Gpu;
    let device = match (engine, gpu) {
        (Engine::Flex, _) => Device::flex(),
        (Engine::LibTorch, false) => libtorch_cpu()?,
        (Engine::LibTorch, true) => cuda::device()?,
    };
    Ok(Placement { engine, device, gpu })
}

#[cfg(feature = "libtorch")]
// Burn 0.22 marks burn-tch deprecated in favour of its CubeCL backends, whose CUDA build
// cannot be made from the registries this project builds from (README, "Training
// engines"); LibTorch is the engine that reaches PyTorch's speed here.
#[allow(deprecated)]
fn libtorch_cpu() -> Result<Device, MlError> {
    Ok(Device::libtorch())
}

#[cfg(not(feature = "libtorch"))]
fn libtorch_cpu() -> Result<Device, MlError> {
    Err(MlError::Backend(
        "this build carries no LibTorch engine: rebuild perun with `--features libtorch` (scripts/install-deps \
         --libtorch, then scripts/with-libtorch cargo build --release --features libtorch), or use the flex engine"
            .into(),
    ))
}

#[cfg(feature = "libtorch-cuda")]
mod cuda {
    use burn::tensor::Device;

    use crate::MlError;

    /// The first CUDA device, once LibTorch says it sees one (acquiring a device that
    /// is not there panics inside the backend instead of returning an error).
    pub(super) fn device() -> Result<Device, MlError> {
        if !tch::Cuda::is_available() {
            return Err(MlError::Backend(format!(
                "LibTorch sees no CUDA device ({} visible to the driver): this needs an NVIDIA GPU, its driver and \
                 CUDA 13's libraries (those of PyTorch 2.11's wheel), or use --device cpu",
                tch::Cuda::device_count()
            )));
        }
        #[allow(deprecated)] // as `libtorch_cpu`
        Ok(Device::libtorch_cuda(0))
    }
}

#[cfg(not(feature = "libtorch-cuda"))]
mod cuda {
    use burn::tensor::Device;

    use crate::MlError;

    pub(super) fn device() -> Result<Device, MlError> {
        Err(MlError::Backend(
            "this build has no GPU engine: rebuild perun with `--features libtorch-cuda` (scripts/with-libtorch --cuda \
             cargo build --release --features libtorch-cuda) and run it where an NVIDIA GPU is, with LD_LIBRARY_PATH \
             set to the torch/lib of a PyTorch 2.11 (CUDA 13) installation"
                .into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(layers: serde_json::Value, input: &[usize], batch: usize, dp: bool) -> ModelSpec {
        let mut training = serde_json::json!({"epochs": 1, "batch_size": batch, "standardize": false});
        if dp {
            training["privacy"] = serde_json::json!({"epsilon": 8.0, "delta": 1e-5, "max_grad_norm": 1.0});
        }
        ModelSpec::from_json(
            serde_json::json!({
                "schema": 1, "name": "t", "input_shape": input, "layers": layers,
                "loss": "cross_entropy", "optimizer": {"kind": "adam", "lr": 0.001}, "training": training
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn small_steps_stay_on_flex_and_the_rule_follows_the_build() {
        let mlp = spec(
            serde_json::json!([{"type": "linear", "out": 16}, {"type": "relu"}, {"type": "linear", "out": 2}]),
            &[30],
            32,
            false,
        );
        assert_eq!(Engine::for_workload(&mlp), Engine::Flex);
        let cnn = spec(
            serde_json::json!([
                {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "padding": 1}, {"type": "relu"},
                {"type": "flatten"}, {"type": "linear", "out": 10}
            ]),
            &[3, 32, 32],
            64,
            false,
        );
        // 64 x 32 x 32 x 27 = 1.77 M per sample, 113 M per step of 64.
        assert_eq!(cnn.macs_per_sample().unwrap(), 64 * 32 * 32 * 27 + 64 * 32 * 32 * 10);
        let expected = if cfg!(feature = "libtorch") { Engine::LibTorch } else { Engine::Flex };
        assert_eq!(Engine::for_workload(&cnn), expected);
        // Under DP-SGD a step computes one sample at a time: 2.4 M, still above the line.
        let layers = |s: &ModelSpec| s.layers.iter().map(|l| serde_json::to_value(l).unwrap()).collect();
        let dp = spec(layers(&cnn), &[3, 32, 32], 64, true);
        assert_eq!(Engine::for_workload(&dp), expected);
        // A small CNN under DP-SGD (8 x 8 x 8 x 9 + 512 x 10 = 9.7 k per sample) stays on flex.
        let small = spec(layers(&cnn), &[1, 8, 8], 64, false);
        let small_dp = spec(
            serde_json::json!([
                {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "relu"},
                {"type": "flatten"}, {"type": "linear", "out": 10}
            ]),
            &[1, 8, 8],
            64,
            true,
        );
        assert_eq!(small_dp.macs_per_sample().unwrap(), 8 * 8 * 8 * 9 + 512 * 10);
        assert_eq!(Engine::for_workload(&small_dp), Engine::Flex);
        // The first CNN's layers on 8 x 8 input: 78 k per sample, 5 M per step of 64, above.
        assert_eq!(small.macs_per_sample().unwrap(), 64 * 8 * 8 * 9 + 4096 * 10);
        assert_eq!(Engine::for_workload(&small), expected);
    }

    #[test]
    fn an_engine_the_build_lacks_is_refused_saying_how_to_get_it() {
        let mlp = spec(serde_json::json!([{"type": "linear", "out": 2}]), &[4], 8, false);
        assert_eq!(place(Compute::CpuWith(Engine::Flex), &mlp).unwrap().engine, Engine::Flex);
        let lt = place(Compute::CpuWith(Engine::LibTorch), &mlp);
        if cfg!(feature = "libtorch") {
            assert_eq!(lt.unwrap().describe(), format!("cpu (libtorch {})", LIBTORCH_VERSION.unwrap()));
        } else {
            assert!(lt.unwrap_err().to_string().contains("--features libtorch"));
        }
        if !cfg!(feature = "libtorch-cuda") {
            assert!(place(Compute::Gpu, &mlp).unwrap_err().to_string().contains("--features libtorch-cuda"));
        }
    }
}
