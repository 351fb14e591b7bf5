//! Argument groups and value types shared by several `halo` subcommands.

use clap::Args;
use halo_core::{Format, ReadOptions};

#[derive(Args)]
pub struct DataArgs {
    /// Input format: omop (CDM 5.4 CSV folder), meds (folder with data/*.parquet), jsonl. Detected when omitted.
    #[arg(long)]
    pub format: Option<Format>,
    /// MEDS: events within this many seconds of a visit's first event join it [default: same calendar day].
    #[arg(long)]
    pub meds_visit_window: Option<i64>,
    /// Years a visit or birth may fall in, FROM..TO; visits and births outside are dropped and counted (year
    /// 9999 is a data error, not a visit). The default admits MIMIC-IV's shifted dates.
    #[arg(long, value_name = "FROM..TO", default_value = "1800..2300", value_parser = parse_years)]
    pub plausible_years: (i32, i32),
    /// Largest magnitude of a lab value; larger ones are dropped and counted.
    #[arg(long, value_name = "X", default_value_t = 1e12, value_parser = parse_positive)]
    pub max_lab_value: f64,
}

impl DataArgs {
    pub fn read_options(&self) -> ReadOptions {
        ReadOptions {
            meds_visit_window_seconds: self.meds_visit_window,
            bounds: halo_core::bounds::Bounds {
                first_year: self.plausible_years.0,
                last_year: self.plausible_years.1,
                max_abs_lab_value: self.max_lab_value,
            },
        }
    }
}

fn parse_positive(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x > 0.0)
        .ok_or_else(|| format!("`{s}`: expected a positive number"))
}

fn parse_years(s: &str) -> Result<(i32, i32), String> {
    halo_core::bounds::Bounds::parse_years(s).ok_or_else(|| format!("`{s}`: expected FROM..TO, e.g. 1800..2300"))
}

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
