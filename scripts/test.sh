#!/usr/bin/env bash
# The whole test suite: unit, integration and documentation tests.
# Installs what the tests need; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every cargo call shares one target directory, so nothing is built twice.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --all-targets --no-fail-fast
else
    echo "cargo-nextest is not installed: running the tests with cargo test"
    cargo test --workspace --all-targets --no-fail-fast
fi
# nextest does not run doctests (the READMEs and crate docs are doctested).
cargo test --workspace --doc
