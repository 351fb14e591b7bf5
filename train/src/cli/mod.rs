//! One file per `halo` subcommand that has moved out of main.rs.

mod elf;
pub mod export;
pub mod keygen;
pub mod package;
mod site_readme;
