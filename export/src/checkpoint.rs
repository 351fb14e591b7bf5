//! Reading a checkpoint folder (config.json, encoding.json, split.json, weights.safetensors, training.json)
//! into plain f32 tensors.

use crate::error::{ExportError, Result};
use halo_core::checkpoint::CheckpointFolder;
use halo_core::config::ModelConfig;
use halo_core::encoding::Encoding;
use halo_core::manifest::TrainingSummary;
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::Path;

/// An f32 tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A checkpoint as read from its folder; every tensor of `config.parameter_shapes()` is present with
/// that shape.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub config: ModelConfig,
    pub encoding: Encoding,
    pub tensors: BTreeMap<String, Tensor>,
    pub training: TrainingSummary,
    /// The run's differential privacy ledger, copied into the manifest.
    pub privacy: Option<halo_core::privacy::PrivacyLedger>,
}

impl Checkpoint {
    /// A parameter by name; the names are those of `ModelConfig::parameter_shapes()`.
    pub fn tensor(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("checkpoint has no tensor {name} (read_checkpoint checks)"))
    }
}

/// Reads and checks a checkpoint folder (`CheckpointFolder::read`) and its weights: every parameter with
/// the shape the config implies, finite. `training.json` is optional.
pub fn read_checkpoint(dir: &Path) -> Result<Checkpoint> {
    let folder = CheckpointFolder::read(dir)?;
    let tensors = read_weights(&folder.weights_path(), &folder.config)?;
    Ok(Checkpoint {
        config: folder.config,
        encoding: folder.encoding,
        tensors,
        training: folder.training,
        privacy: folder.privacy,
    })
}

fn read_weights(path: &Path, config: &ModelConfig) -> Result<BTreeMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| ExportError::io(path, e))?;
    let weights_error = |message: String| ExportError::Weights {
        path: path.to_path_buf(),
        message,
    };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        weights_error(format!(
            "{e} ({} bytes; the file may be truncated or not a safetensors file)",
            bytes.len()
        ))
    })?;
    let mut out = BTreeMap::new();
    for (name, expected) in config.parameter_shapes() {
        let view = st.tensor(&name).map_err(|_| ExportError::MissingTensor {
            path: path.to_path_buf(),
            name: name.clone(),
            expected: expected.clone(),
        })?;
        if view.shape() != expected.as_slice() {
            return Err(ExportError::ShapeMismatch {
                path: path.to_path_buf(),
                name,
                expected,
                found: view.shape().to_vec(),
            });
        }
        if view.dtype() != Dtype::F32 {
            return Err(weights_error(format!(
                "tensor `{name}` is {:?}, expected F32",
                view.dtype()
            )));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(weights_error(format!(
                "tensor `{name}` holds a non-finite value at flat index {i}"
            )));
        }
        out.insert(name, Tensor { shape: expected, data });
    }
    Ok(out)
}
