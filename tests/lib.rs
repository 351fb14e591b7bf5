//! No library code: the tests are in tests/ (Rust) and python/ (the scripts they run).
