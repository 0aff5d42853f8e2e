#!/usr/bin/env bash
# Installs the external tools that mcufit's export verification uses (`mcufit export --verify`,
# the mcufit-export tests). mcufit itself never installs anything: `verify::tools_available` only
# detects these and names this script when something is missing.
#   python: a Python with tflite-micro (TFLM python runtime), ai-edge-litert and numpy:
#           $MCUFIT_PYTHON when set (checked, never modified), else .venv at the repo root
#           (created / completed with pip).
#   onnx:   onnx and onnxruntime (the ONNX importer's tests build fixtures with onnx and check them
#           against onnxruntime), in the same Python: $MCUFIT_PYTHON when set (checked), else .venv.
#   arm:    gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm (Debian packages, apt-get;
#           root or passwordless sudo).
# Idempotent: does nothing when everything is already present.
# Usage: setup-verify-tools.sh [python|onnx|arm|all]   (default all). Exit status 0 only when the asked
# tools work.
set -u
what="${1:-all}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
status=0

# install_pip PACKAGES...: makes `import PACKAGES` work in $MCUFIT_PYTHON (checked, never modified) or
# in .venv (created / completed with pip). Package names are their import names with '_' for '-'.
# Extra pip flags (e.g. --pre) go before the packages.
install_pip() {
    local flags=() pkgs=()
    for a in "$@"; do case "$a" in --*) flags+=("$a") ;; *) pkgs+=("$a") ;; esac; done
    local mods
    mods="import $(printf '%s, ' "${pkgs[@]//-/_}")"
    mods="${mods%, }"
    if [ -n "${MCUFIT_PYTHON:-}" ]; then
        if "$MCUFIT_PYTHON" -c "$mods" 2>/dev/null; then return 0; fi
        echo "setup-verify-tools.sh: MCUFIT_PYTHON=$MCUFIT_PYTHON cannot run '$mods';" \
            "install them there (pip install ${flags[*]:+${flags[*]} }${pkgs[*]}) or unset MCUFIT_PYTHON to use $venv" >&2
        return 1
    fi
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$mods" 2>/dev/null; then
        return 0
    fi
    local py
    py="$(command -v python3 || true)"
    if [ -z "$py" ]; then echo "setup-verify-tools.sh: python3 not found" >&2; return 1; fi
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv" || return 1
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${flags[@]}" "${pkgs[@]}" || return 1
    "$venv/bin/python" -c "$mods"
}

# tflite-micro publishes only dev (pre-release) versions, hence --pre.
install_python() { install_pip --pre tflite-micro ai-edge-litert numpy; }
install_onnx() { install_pip onnx onnxruntime numpy; }

install_arm() {
    if command -v arm-none-eabi-gcc >/dev/null && command -v arm-none-eabi-size >/dev/null \
        && command -v qemu-system-arm >/dev/null && [ -d /usr/lib/arm-none-eabi/newlib ]; then
        return 0
    fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null; then sudo="sudo -n"; else echo "setup-verify-tools.sh: need root for apt-get" >&2; return 1; fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >/dev/null 2>&1 || true
    $sudo apt-get install -y -qq gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm >/dev/null || return 1
    command -v arm-none-eabi-gcc >/dev/null && command -v arm-none-eabi-size >/dev/null && command -v qemu-system-arm >/dev/null
}

# Serialise concurrent callers (cargo runs test binaries in parallel).
exec 9>"${TMPDIR:-/tmp}/mcufit-tools.lock"
command -v flock >/dev/null && flock 9

case "$what" in
    python) install_python || status=1 ;;
    onnx) install_onnx || status=1 ;;
    arm) install_arm || status=1 ;;
    all) install_python || status=1; install_onnx || status=1; install_arm || status=1 ;;
    *) echo "usage: $0 [python|onnx|arm|all]" >&2; exit 2 ;;
esac
exit $status
