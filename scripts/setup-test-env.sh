#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine: the Arm cross compiler and qemu (C export on
# Cortex-M4), Fashion-MNIST, and a .venv with TFLite Micro + LiteRT (the int8 references). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v arm-none-eabi-gcc >/dev/null || need_apt+=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
command -v qemu-system-arm >/dev/null || need_apt+=(qemu-system-arm)
[ -d /usr/share/datasets/fashion-mnist ] || need_apt+=(dataset-fashion-mnist)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "== installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Python tools for the export checks: TFLM (the bit-exact reference) and LiteRT.
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import tflite_micro, ai_edge_litert, numpy" 2>/dev/null; then
  echo "== creating .venv with tflite-micro, ai-edge-litert, numpy"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q tflite-micro ai-edge-litert numpy
fi
