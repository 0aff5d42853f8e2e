# Sourced by the bench scripts (after `cd` to the repository root).

# Sets M to the mcufit binary: $MCUFIT, else target/release/mcufit built now. An absolute path.
bench_mcufit() {
    if [ -z "${MCUFIT:-}" ]; then cargo build --release -q -p mcufit-cli; fi
    M=$(realpath "${MCUFIT:-./target/release/mcufit}")
}

# bench_data SCRIPT PATH...: sets data to $MCUFIT_DATASETS (default ../shared/datasets) and exits 2,
# naming SCRIPT, when a PATH under it is missing.
bench_data() {
    local script=$1 p
    shift
    data="${MCUFIT_DATASETS:-../shared/datasets}"
    for p in "$@"; do
        [ -e "$data/$p" ] || { echo "$script: $data/$p not found (set MCUFIT_DATASETS)" >&2; exit 2; }
    done
}
