//! halo-train: HALO on libtorch (model, training with exact resume, scores, the utility classifier). The
//! `halo` command (crate halo-cli) is a thin layer over this; nothing here knows the command line.

pub mod checkpoint;
pub mod data;
pub mod dp;
pub mod model;
pub mod optim;
pub mod resume;
pub mod score;
pub mod settings;
pub mod test_split;
pub mod train;
pub mod utility;
