//! halo-train: HALO on libtorch. The `halo` binary (src/main.rs) is a thin command-line layer over this.

pub mod checkpoint;
pub mod data;
pub mod model;
pub mod optim;
pub mod resume;
pub mod score;
pub mod train;
pub mod utility;
