//! Loading a checkpoint folder written by `halo train`.

use crate::model::Halo;
use crate::train::load_into;
use anyhow::{bail, Context, Result};
use halo_core::config::ModelConfig;
use halo_core::encoding::{Encoding, LabelSpec};
use halo_core::fsutil::read_json;
use halo_core::manifest::checkpoint as ck;
use halo_core::split::SplitAssignment;
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Device, Tensor};

pub struct Checkpoint {
    pub config: ModelConfig,
    pub encoding: Encoding,
    pub split: SplitAssignment,
    pub spec: Option<LabelSpec>,
    pub vs: nn::VarStore,
    pub model: Halo,
}

pub fn load(dir: &Path, device: Device) -> Result<Checkpoint> {
    if !dir.is_dir() {
        bail!("{}: not a checkpoint folder (no such folder)", dir.display());
    }
    for name in [ck::CONFIG, ck::ENCODING, ck::SPLIT, ck::WEIGHTS] {
        if !dir.join(name).is_file() {
            bail!(
                "{}: not a checkpoint folder: {name} is missing (expected the folder written by `halo train --out`)",
                dir.display()
            );
        }
    }
    let config = ModelConfig::read(&dir.join(ck::CONFIG))?;
    let encoding: Encoding = read_json(&dir.join(ck::ENCODING), "encoding")?;
    encoding.validate(&dir.join(ck::ENCODING))?;
    if encoding.vocab_size() != config.total_vocab_size {
        bail!(
            "{}: encoding has {} tokens but config.json says total_vocab_size {}",
            dir.display(),
            encoding.vocab_size(),
            config.total_vocab_size
        );
    }
    let split: SplitAssignment = read_json(&dir.join(ck::SPLIT), "split")?;
    let spec_path = dir.join(ck::LABEL_SPEC);
    let spec = if spec_path.is_file() {
        Some(LabelSpec::read(&spec_path)?)
    } else {
        None
    };
    let mut vs = nn::VarStore::new(device);
    let model = Halo::load(&vs.root(), &config);
    let weights = dir.join(ck::WEIGHTS);
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
    Ok(Checkpoint {
        config,
        encoding,
        split,
        spec,
        vs,
        model,
    })
}
