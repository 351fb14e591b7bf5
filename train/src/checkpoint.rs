//! A checkpoint folder written by `halo train`, loaded into a libtorch model (the folder's files are
//! checked by `halo_core::checkpoint::CheckpointFolder`), and the weights files the trainer writes and resumes
//! from.

use crate::model::Halo;
use crate::optim::Adam;
use crate::train::TrainState;
use anyhow::{bail, Context, Result};
use halo_core::checkpoint::CheckpointFolder;
use halo_core::config::ModelConfig;
use halo_core::encoding::{Encoding, LabelSpec};
use halo_core::fsutil::{read_json, temp_sibling, write_json_atomic};
use halo_core::manifest::checkpoint as ck;
use halo_core::manifest::TrainingSummary;
use halo_core::split::SplitAssignment;
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

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

/// Writes the model's weights (plus `extra` tensors) to `path` through a temporary file.
pub(crate) fn save_weights(path: &Path, vs: &nn::VarStore, extra: &[(String, Tensor)]) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.extend(extra.iter().map(|(n, t)| (n.clone(), t.shallow_clone())));
    let refs: Vec<(&str, Tensor)> = named
        .iter()
        .map(|(n, t)| (n.as_str(), t.to_device(Device::Cpu)))
        .collect();
    let refs2: Vec<(&str, &Tensor)> = refs.iter().map(|(n, t)| (*n, t)).collect();
    let tmp = temp_sibling(path);
    Tensor::write_safetensors(&refs2, &tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Writes `last.safetensors` (weights, optimizer state, the loop counters) and `train_state.json`.
pub(crate) fn save_last(out: &Path, vs: &nn::VarStore, adam: &Adam, state: &TrainState) -> Result<()> {
    let mut extra = adam.named_state();
    extra.push((
        "train.epochs_done".into(),
        Tensor::from_slice(&[state.epochs_done as i64]),
    ));
    extra.push(("train.step".into(), Tensor::from_slice(&[state.step])));
    extra.push(("train.best_val_loss".into(), Tensor::from_slice(&[state.best_val_loss])));
    extra.push((
        "train.best_epoch".into(),
        Tensor::from_slice(&[state.best_epoch as i64]),
    ));
    save_weights(&out.join(ck::LAST), vs, &extra)?;
    write_json_atomic(&out.join(ck::TRAIN_STATE), state)?;
    Ok(())
}

/// Reads what [`save_last`] wrote into the variables and the optimizer; returns the train state.
pub(crate) fn load_last(out: &Path, vs: &mut nn::VarStore, adam: &mut Adam) -> Result<TrainState> {
    let path = out.join(ck::LAST);
    let saved: HashMap<String, Tensor> = Tensor::read_safetensors(&path)
        .with_context(|| format!("reading {} (truncated or not a safetensors file?)", path.display()))?
        .into_iter()
        .collect();
    load_into(vs, &saved, &path)?;
    let scalar = |name: &str| -> Result<f64> {
        Ok(saved
            .get(name)
            .with_context(|| format!("{}: `{name}` missing (not a resumable checkpoint)", path.display()))?
            .to_kind(Kind::Double)
            .double_value(&[0]))
    };
    let step = scalar("train.step")? as i64;
    adam.load_state(&saved, step, &path)?;
    let state: TrainState = read_json(&out.join(ck::TRAIN_STATE), "train state")?;
    Ok(TrainState {
        epochs_done: scalar("train.epochs_done")? as usize,
        step,
        best_val_loss: scalar("train.best_val_loss")?,
        best_epoch: scalar("train.best_epoch")? as usize,
        ..state
    })
}

/// Copies named tensors into the variables, checking names and shapes.
pub fn load_into(vs: &mut nn::VarStore, saved: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let _guard = tch::no_grad_guard();
    for (name, mut var) in vs.variables() {
        let t = saved
            .get(&name)
            .with_context(|| format!("{}: tensor `{name}` missing", path.display()))?;
        if t.size() != var.size() {
            bail!(
                "{}: tensor `{name}` has shape {:?}, the model expects {:?}",
                path.display(),
                t.size(),
                var.size()
            );
        }
        var.copy_(t);
    }
    Ok(())
}
