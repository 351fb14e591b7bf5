//! Argument groups and value types shared by several `halo` subcommands.

pub use halo_prepare::args::{DataArgs, EncodingArgs};

/// Where libtorch runs: `cpu`, `cuda` (an error when CUDA cannot be used) or `auto` (CUDA when available).
#[derive(Debug, Clone, Copy)]
pub struct TorchDevice(pub tch::Device);

impl std::str::FromStr for TorchDevice {
    type Err = String;
    fn from_str(s: &str) -> Result<TorchDevice, String> {
        #[derive(Clone, Copy)]
        enum Choice {
            Cpu,
            Cuda,
            Auto,
        }
        let choice = halo_core::keyword::parse_keyword(
            s,
            "device",
            &[("cpu", Choice::Cpu), ("cuda", Choice::Cuda), ("auto", Choice::Auto)],
        )?;
        match choice {
            Choice::Cpu => Ok(TorchDevice(tch::Device::Cpu)),
            Choice::Cuda if tch::Cuda::is_available() => Ok(TorchDevice(tch::Device::Cuda(0))),
            Choice::Cuda => Err("CUDA is not available on this machine (use --device cpu or auto)".into()),
            Choice::Auto => Ok(TorchDevice(tch::Device::cuda_if_available())),
        }
    }
}

/// A learning rate: a finite number above 0.
pub fn parse_learning_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(lr) if lr.is_finite() && lr > 0.0 => Ok(lr),
        _ => Err(format!(
            "`{s}` is not a learning rate (expected a finite number above 0, e.g. 1e-4)"
        )),
    }
}
