//! halo-export
