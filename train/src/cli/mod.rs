//! One file per `halo` subcommand that has moved out of main.rs.

pub mod export;
pub mod keygen;
