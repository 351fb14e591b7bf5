//! What the diagnostic examples share: loading a checkpoint with the data's encoded splits from the command
//! line, and the code module of a checkpoint as plain rows, for the examples that redraw a visit code by code
//! given its true history (`chain`, `onset`, `first_calendar`): the masked two-layer module of `ehr_head`
//! (auto1, auto2), one unit per history dimension and per code before it.
// Each example uses the part it needs.
#![allow(dead_code)]

use anyhow::{Context, Result};
use halo_core::record::Split;
use halo_core::ReadOptions;
use halo_train::checkpoint::{self, Checkpoint};
use halo_train::data::{self, EncodedSplit};
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Device, Kind};

/// The checkpoint and the data's records encoded per split, from the command line `example CHECKPOINT DATA`
/// of the example `name`.
pub fn checkpoint_and_splits(name: &str) -> Result<(Checkpoint, HashMap<Split, EncodedSplit>)> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [ck_dir, data_path] = args.as_slice() else {
        anyhow::bail!("usage: {name} CHECKPOINT DATA");
    };
    let ck = checkpoint::load(ck_dir, Device::Cpu)?;
    let dataset = data::read(data_path, None, &ReadOptions::default()).context("reading the data")?;
    let (splits, _) = data::encode_splits(&dataset.patients, &ck.split, &ck.encoding, ck.spec.as_ref());
    Ok((ck, splits))
}

pub struct CodeModuleRows {
    /// First layer, masked (input unit <= output unit), and its bias.
    w1: Vec<Vec<f32>>,
    b1: Vec<f32>,
    /// Second layer and its bias.
    w2: Vec<Vec<f32>>,
    b2: Vec<f32>,
    /// The history's width (n_embd).
    e: usize,
}

impl CodeModuleRows {
    pub fn of(ck: &Checkpoint) -> Result<CodeModuleRows> {
        let vars = ck.vs.variables();
        let get = |name: &str| -> Result<Vec<Vec<f32>>> {
            let t = vars.get(name).with_context(|| format!("no variable {name}"))?;
            Ok(Vec::<Vec<f32>>::try_from(t.to_kind(Kind::Float))?)
        };
        let bias = |name: &str| -> Result<Vec<f32>> {
            let t = vars.get(name).with_context(|| format!("no variable {name}"))?;
            Ok(Vec::<f32>::try_from(t.to_kind(Kind::Float))?)
        };
        let w1 = get("ehr_head.auto1.weight")?;
        let d = w1.len();
        Ok(CodeModuleRows {
            w1: (0..d)
                .map(|o| (0..d).map(|i| if i <= o { w1[o][i] } else { 0.0 }).collect())
                .collect(),
            b1: bias("ehr_head.auto1.bias")?,
            w2: get("ehr_head.auto2.weight")?,
            b2: bias("ehr_head.auto2.bias")?,
            e: ck.config.n_embd,
        })
    }

    /// The first layer's pre-activations given the history `h` and no code of the visit set.
    pub fn start(&self, h: &[f32]) -> Vec<f32> {
        (0..self.w1.len())
            .map(|o| self.b1[o] + (0..self.e).map(|k| self.w1[o][k] * h[k]).sum::<f32>())
            .collect()
    }

    /// The logit of code `j` under pre-activations `pre`.
    pub fn logit(&self, pre: &[f32], j: usize) -> f32 {
        let row = self.e - 1 + j;
        self.b2[row] + (0..=row).map(|k| self.w2[row][k] * pre[k].max(0.0)).sum::<f32>()
    }

    /// Sets code `j` in the visit: adds its column to the pre-activations.
    pub fn set(&self, pre: &mut [f32], j: usize) {
        for (o, pre_o) in pre.iter_mut().enumerate() {
            *pre_o += self.w1[o][self.e + j];
        }
    }
}
