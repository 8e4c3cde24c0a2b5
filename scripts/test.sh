#!/usr/bin/env bash
# The whole test suite: unit, integration and documentation tests.
# Installs what the tests need (when it can: root and apt); safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every cargo call shares one target directory, so nothing is built twice.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

# System packages the tests use: Graphviz draws the task graph as SVG;
# Chromium opens the live dashboard and the report, headless.
missing=()
command -v dot >/dev/null 2>&1 || missing+=(graphviz)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "cannot install ${missing[*]} (needs root and apt-get): the tests that need them say they are skipped"
    fi
fi

# A one-host Grid Engine for the SGE tests (about 15 s the first time, 2 s
# after), and a one-host Slurm with accounting for the Slurm tests (15 to
# 50 s the first time, 1 s after). Without them those tests say they are
# skipped; under CI=true they fail.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    ./scripts/gridengine.sh || echo "Grid Engine could not be set up (see above): the SGE tests will say so"
    ./scripts/slurm.sh </dev/null || echo "Slurm could not be set up (see above): the Slurm tests will say so"
else
    echo "not root with apt-get: no Grid Engine or Slurm is set up, and their tests say they are skipped"
fi

# Python with NumPy reads our .npy checkpoints in tests; scikit-learn runs
# the iris pipeline that the linfa example is compared with.
if command -v python3 >/dev/null 2>&1 && ! python3 -c "import numpy, sklearn" >/dev/null 2>&1; then
    echo "installing numpy and scikit-learn for python3"
    python3 -m pip install --quiet --disable-pip-version-check numpy scikit-learn \
        || echo "cannot install numpy/scikit-learn: the tests that need them say they are skipped"
fi

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --all-targets --all-features --no-fail-fast
else
    echo "cargo-nextest is not installed: running the tests with cargo test"
    cargo test --workspace --all-targets --all-features --no-fail-fast
fi
# nextest does not run doctests (the READMEs and crate docs are doctested).
cargo test --workspace --doc --all-features
# The thread pool's sleep/wake protocol under the loom model checker: every
# interleaving of two threads (up to three preemptions), with no park timeout
# that could hide a lost wake-up. `--cfg loom` changes every crate's build, so
# it has a target folder of its own.
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR="$CARGO_TARGET_DIR/loom" \
    cargo test --release -p bob-pipelines-executor --lib loom
