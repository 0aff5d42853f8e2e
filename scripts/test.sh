#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh Debian machine, then checks formatting and lints
# and runs every test. Idempotent: installed pieces are skipped. Used as-is by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-test-env.sh
export MCUFIT_PYTHON="$PWD/.venv/bin/python"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --release -- -D warnings
echo "== cargo test"
cargo test --workspace --release --no-fail-fast "$@"
if [ "${MCUFIT_FUZZ_SMOKE:-1}" = 1 ]; then
  # Building the instrumented harnesses costs about 5 min on 2 cores before 40 s of fuzzing;
  # MCUFIT_FUZZ_SMOKE=0 skips it. Long campaigns: bench/RESULTS.md (reliability).
  echo "== fuzz smoke: every parser 5 s (scripts/fuzz.sh)"
  bash scripts/fuzz.sh 5
fi
