#!/usr/bin/env bash
# Issue 13, item 4: one search on a real PostgreSQL, with 1 and with 2 workers (1 thread each).
#
# A throwaway PostgreSQL 15 server (initdb + pg_ctl in a temp dir, as `nobody` when run as root),
# one database per run:
#   run 1 and 2: the same search (MNIST, a short proxy; --population above --trials, so every trial is
#                one of the same seeded random candidates in both runs) to TRIALS trials with 1 worker,
#                then with 2 workers: wall time, trials per hour, mean store time per trial (claim,
#                lease renewals, result), read back from the store (`mcufit search --status --json`).
#   run 3:       2 workers, the first killed with SIGKILL while it trains (lease 10 s): trials claimed,
#                finished, re-run, lost, from the store.
#
# Usage: bench/search_scaleout.sh [OUT_DIR]     (default /tmp/mcufit-scaleout)
# Env:   TRIALS (default 24), KILL_TRIALS (run 3, default 8), MCUFIT (binary; default: build target/release/mcufit),
#        MCUFIT_DATASETS (default ../shared/datasets).
# Time:  ~20 min on the 2-core machine at TRIALS=24 (run it quiet: 2 workers need both cores).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/mcufit-scaleout}"
trials=${TRIALS:-24}
. bench/lib.sh
bench_data search_scaleout.sh mnist
bench_mcufit
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "search_scaleout.sh: PostgreSQL not installed (apt-get install postgresql)" >&2; exit 2; }

rm -rf "$out" && mkdir -p "$out"
pgdir=$(mktemp -d /tmp/mcufit-pg.XXXXXX)
as=()
if [ "$(id -u)" = 0 ]; then
    chown nobody:"$(id -gn nobody)" "$pgdir"
    as=(setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups --)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${as[@]}" "$bin/initdb" -D "$pgdir/data" -U mcufit --auth=trust -E UTF8 > "$out/initdb.log"
"${as[@]}" "$bin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -o "-p $port -k $pgdir -h 127.0.0.1" -w start > /dev/null
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null || true; done
    "${as[@]}" "$bin/pg_ctl" -D "$pgdir/data" -m immediate stop > /dev/null 2>&1 || true
    rm -rf "$pgdir"
}
trap cleanup EXIT
psql() { "$bin/psql" -h 127.0.0.1 -p "$port" -U mcufit -d postgres -qAt -c "$1"; }
server=$("$bin/postgres" --version)
echo "server: $server on port $port; binary $M; load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out/summary.txt"

flags=(--data "mnist:$data/mnist" --peak 1700 --size 3000 --macs 20M --space ds-cnn --max-blocks 4
    --population 200 --sample 4 --proxy-epochs 1 --prune-epochs 2 --limit 6000 --threads 1 --seed 7)

status() { "$M" search --status --json --store "$1"; }
field() { python3 -c 'import json,sys; d=json.load(sys.stdin)["progress"]; print(d[sys.argv[1]])' "$1"; }
# Waits until the search in store $1 has proposed a trial (the first worker created it).
wait_started() {
    for _ in $(seq 600); do
        if status "$1" > /dev/null 2>&1 && [ "$(status "$1" | field proposed)" -ge 1 ]; then return; fi
        sleep 0.2
    done
    echo "search_scaleout.sh: the search in $1 did not start" >&2
    exit 1
}

run() { # run NAME WORKERS TRIALS LEASE [KILL]
    local name=$1 workers=$2 trials=$3 lease=$4 kill=${5:-}
    psql "CREATE DATABASE $name"
    local url="postgres://mcufit@127.0.0.1:$port/$name" dir="$out/$name"
    local t0 t1
    t0=$(date +%s.%N)
    "$M" search --store "$url" --out "$dir" --trials "$trials" --lease "$lease" "${flags[@]}" > "$out/$name.1.log" 2>&1 &
    local first=$!
    pids=("$first")
    wait_started "$url"
    for i in $(seq 2 "$workers"); do
        "$M" search --worker --store "$url" --threads 1 --lease "$lease" > "$out/$name.$i.log" 2>&1 &
        pids+=($!)
    done
    if [ -n "$kill" ]; then
        # Kill the first worker once it holds a trial and at least one trial has finished.
        for _ in $(seq 3000); do
            if status "$url" | python3 -c '
import json, sys
p = json.load(sys.stdin)["progress"]
on = [r for r in p["running_on"] if ":'"$first"':" in json.dumps(r)]
sys.exit(0 if on and p["done"] >= 1 else 1)'; then break; fi
            sleep 0.2
        done
        kill -9 "$first"
        echo "killed worker 1 (pid $first) at $(date +%T) while it trained a trial" | tee -a "$out/summary.txt"
    fi
    local rc=0
    for p in "${pids[@]}"; do wait "$p" || rc=$((rc + 1)); done
    t1=$(date +%s.%N)
    status "$url" > "$out/$name.status.json"
    "$bin/psql" -h 127.0.0.1 -p "$port" -U mcufit -d "$name" -qAt -F ' ' \
        -c "SELECT id, status, attempts, worker FROM mcufit_trials ORDER BY id" > "$out/$name.trials.txt"
    python3 - "$name" "$workers" "$t0" "$t1" "$out/$name.status.json" "$out/$name.trials.txt" "$rc" "$kill" <<'EOF' | tee -a "$out/summary.txt"
import json, sys
name, workers, t0, t1, st, rows, rc, kill = sys.argv[1:]
p = json.load(open(st))["progress"]
rows = [l.split() for l in open(rows) if l.strip()]
wall = float(t1) - float(t0)
done = sum(r[1] == "done" for r in rows)
failed = sum(r[1] == "failed" for r in rows)
claims = sum(int(r[2]) for r in rows)
rerun = sum(int(r[2]) > 1 for r in rows)
lost = sum(r[1] not in ("done", "failed") for r in rows)
per_worker = {}
for r in rows:
    per_worker[r[3]] = per_worker.get(r[3], 0) + 1
print(f"{name}: {workers} worker(s), {len(rows)} trials, {done} done, {failed} failed, wall {wall:.0f} s, "
      f"{3600 * done / wall:.1f} trials/hour (wall), mean trial {p['mean_trial_s']:.1f} s, "
      f"store {p['mean_store_ms']:.1f} ms per trial; claims {claims}, re-run {rerun}, lost {lost}; "
      f"finished by worker: {sorted(per_worker.values(), reverse=True)}; workers that exited non-zero: {rc}"
      + (" (the killed one)" if kill and rc == "1" else ""))
EOF
}

run one 1 "$trials" 60s
run two 2 "$trials" 60s
run kill 2 "${KILL_TRIALS:-8}" 10s kill
echo "logs, stores and the per-trial rows: $out" >&2
