#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine. Idempotent.
#  - the export-verification tools (Arm cross compiler, qemu, a .venv with TFLite Micro + LiteRT):
#    scripts/setup-verify-tools.sh, which the export tests also call themselves when a tool is missing;
#  - Fashion-MNIST (Debian's dataset-fashion-mnist) for the data loader's real-data test;
#  - Chromium (Debian's chromium) for the report's browser test (crates/mcufit-report/tests/chromium.rs);
#  - PostgreSQL (Debian's postgresql) for the shared trial-store test (crates/mcufit-cli/tests/search.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-verify-tools.sh all
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  echo "== installing dataset-fashion-mnist"
  $SUDO apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null
fi
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  echo "== installing chromium"
  $SUDO apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  echo "== installing postgresql"
  $SUDO apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
