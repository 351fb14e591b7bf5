//! A checkpoint folder written by `halo train`, loaded into a libtorch model (the folder's files are
//! checked by `halo_core::checkpoint::CheckpointFolder`).

use crate::model::Halo;
use crate::train::load_into;
use anyhow::{Context, Result};
use halo_core::checkpoint::CheckpointFolder;
use halo_core::config::ModelConfig;
use halo_core::encoding::{Encoding, LabelSpec};
use halo_core::manifest::TrainingSummary;
use halo_core::split::SplitAssignment;
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Device, Tensor};

pub struct Checkpoint {
    pub config: ModelConfig,
    pub encoding: Encoding,
    pub split: SplitAssignment,
    pub spec: Option<LabelSpec>,
    pub training: TrainingSummary,
    pub vs: nn::VarStore,
    pub model: Halo,
}

pub fn load(dir: &Path, device: Device) -> Result<Checkpoint> {
    let folder = CheckpointFolder::read(dir)?;
    let mut vs = nn::VarStore::new(device);
    let model = Halo::load(&vs.root(), &folder.config);
    let weights = folder.weights_path();
    let saved: HashMap<String, Tensor> = Tensor::read_safetensors(&weights)
        .with_context(|| {
            format!(
                "{}: cannot read weights (truncated or not a safetensors file?)",
                weights.display()
            )
        })?
        .into_iter()
        .collect();
    load_into(&mut vs, &saved, &weights)?;
    let CheckpointFolder {
        config,
        encoding,
        split,
        spec,
        training,
        ..
    } = folder;
    Ok(Checkpoint {
        config,
        encoding,
        split,
        spec,
        training,
        vs,
        model,
    })
}
