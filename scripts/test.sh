#!/usr/bin/env bash
# Sets up (idempotent) and runs every check CI runs: formatting, clippy and rustdoc with warnings as errors,
# all tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
./scripts/setup.sh
source scripts/env.sh
cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --quiet
cargo test --release --workspace
echo "test.sh: all checks passed" >&2
