//! No library code. tests/ holds the end-to-end tests of the `halo` and `halo-sample` binaries (run as a user
//! runs them; `cargo test --workspace` builds both first) and python/ the client checks they run.
