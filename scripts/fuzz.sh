#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser (harnesses in fuzz/, one libFuzzer target per parser).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      # default: 60 s each, every target
#
# Builds the harnesses with the machine's stable toolchain (libfuzzer-sys compiles libFuzzer from its C++
# source; SanitizerCoverage is switched on with stable -C flags, so no nightly is needed), builds the seed
# corpus (fuzz/make_corpus.py: fuzz/seeds, small files cut from ../shared, the zoo, generated files), then
# runs each target for the given time and prints executions and crashes per target. A crash input is kept
# under fuzz/artifacts/TARGET/; replay it with `fuzz/target/<host>/release/TARGET FILE`.
# Exit status: 0 when no target crashed, 1 otherwise.
#
# FUZZ_ASAN=1 adds AddressSanitizer (-Zsanitizer=address, accepted by the stable compiler under
# RUSTC_BOOTSTRAP=1; its runtime ships with the stable toolchain). The parsers are safe Rust, so it is off
# by default: it slows the build and each execution several times over.
# Extra libFuzzer flags can be given in FUZZ_ARGS (e.g. FUZZ_ARGS="-max_len=65536").
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
[ $# -gt 0 ] && shift
all=(idx cifar image wav model_json boards_toml tflite onnx)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

# libfuzzer-sys builds libFuzzer with the system C++ compiler; the corpus script needs python3.
if ! command -v c++ >/dev/null || ! command -v python3 >/dev/null; then
    echo "== installing g++ and python3"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ python3 >/dev/null
fi

host="$(rustc -vV | sed -n 's/^host: //p')"
flags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    --cfg fuzzing
    -Cdebug-assertions
    -Coverflow-checks
)
target_dir=fuzz/target
if [ "${FUZZ_ASAN:-0}" = 1 ]; then
    flags+=(-Zsanitizer=address)
    export RUSTC_BOOTSTRAP=1
    target_dir=fuzz/target/asan
fi

echo "== building fuzz targets (${target_dir}, ${FUZZ_ASAN:+ASan, }release)"
build_start=$SECONDS
# --target keeps the instrumentation off build scripts and proc macros, as cargo fuzz does.
RUSTFLAGS="${flags[*]}" cargo build --release --manifest-path fuzz/Cargo.toml --target-dir "$target_dir" \
    --target "$host" $(printf -- '--bin %s ' "${targets[@]}")
echo "   built in $((SECONDS - build_start)) s"

echo "== seed corpus"
python3 fuzz/make_corpus.py

bin="$target_dir/$host/release"
logs="$target_dir/logs"
mkdir -p "$logs"
failed=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/artifacts/$t"
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    echo "== fuzzing $t for ${secs} s"
    set +e
    # shellcheck disable=SC2086
    # fuzz/artifacts/TARGET goes in as a second corpus folder: every run replays the crashes found before.
    "$bin/$t" "fuzz/corpus/$t" "fuzz/artifacts/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 ${FUZZ_ARGS:-} >"$logs/$t.log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$logs/$t.log" | tail -1 | cut -d' ' -f2)
    after=$(find "fuzz/artifacts/$t" -type f | wc -l)
    crashes=$((after - before))
    status=ok
    if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
        status="CRASH (exit $rc, log $logs/$t.log)"
        failed=1
        grep -m1 -A3 -E "panicked|ERROR: libFuzzer|ERROR: AddressSanitizer" "$logs/$t.log" | sed 's/^/   /' || true
        [ "$crashes" -gt 0 ] && ls -t "fuzz/artifacts/$t"/* | head -n "$crashes" | sed 's/^/   input: /'
    fi
    summary+=("$(printf '%-12s %12s execs  cov %6s  %d crash(es)  %s' "$t" "${execs:-?}" "${cov:-?}" "$crashes" "$status")")
done

echo "== fuzz summary (${secs} s per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"
