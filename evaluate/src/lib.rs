//! halo-evaluate
