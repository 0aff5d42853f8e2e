#!/usr/bin/env bash
# Real-data runs behind bench/compress_RESULTS.md (mcufit-prune). CPU only, 2 threads.
# Datasets: /work/shared/datasets/{mnist,speech_commands_v0.02_test}. Outputs go to $RUNS.
set -euo pipefail
RUNS=${RUNS:-/tmp/runs}
MNIST=mnist:/work/shared/datasets/mnist
SPEECH=speech-commands:/work/shared/datasets/speech_commands_v0.02_test
cargo build -p mcufit-prune --release --example compress
X=target/release/examples/compress
mkdir -p "$RUNS"

# MNIST: unpruned wide base, then compress to the μNAS bounds and the two baselines at the same budget.
$X train    zoo:mnist-wide $MNIST --epochs 10 --out "$RUNS/mnist-wide-base"
$X compress zoo:mnist-wide $MNIST --ram 2500 --flash 4500 --macs 30M --epochs 16 --from "$RUNS/mnist-wide-base" --out "$RUNS/mnist-final"
$X uniform  zoo:mnist-wide $MNIST --ram 2500 --flash 4500 --macs 30M --epochs 12
$X l1       zoo:mnist-wide $MNIST --ram 2500 --flash 4500 --macs 30M --epochs 12 --from "$RUNS/mnist-wide-base"
# Longer schedule (15 pruning + 15 fine-tune epochs), then the fine-tune alone re-run on the same
# pruned model with other recipes (copy the run, drop checkpoints/finetune, --resume).
$X compress zoo:mnist-wide $MNIST --ram 2500 --flash 4500 --macs 30M --epochs 30 --finetune-epochs 15 --from "$RUNS/mnist-wide-base" --out "$RUNS/mnist-long"
for recipe in "--distill 0.5" "--distill 0.7 --distill-temperature 4" "--no-augment" "--weight-decay 1e-4"; do
    d="$RUNS/mnist-long-ft-$(echo $recipe | tr -dc 'a-z0-9.')"
    rm -rf "$d"; cp -r "$RUNS/mnist-long" "$d"; rm -rf "$d/checkpoints/finetune" "$d/report.json"
    $X compress zoo:mnist-wide $MNIST --ram 2500 --flash 4500 --macs 30M --epochs 30 --finetune-epochs 15 --from "$RUNS/mnist-wide-base" --out "$d" --resume $recipe
done
$X l1       zoo:mnist-wide $MNIST --ram 2500 --flash 4500 --macs 30M --epochs 15 --from "$RUNS/mnist-wide-base"
# The depthwise-separable base, two recipes. mnist_ds_recipe BASE_EPOCHS FT_EPOCHS UNIFORM_EPOCHS
# BASE_DIR OUT: train the base, compress it with 15 pruning + FT_EPOCHS fine-tune epochs for seeds
# 42 and 1 (OUT-s42, OUT-s1), L1 one-shot with the same fine-tune length, uniform width from scratch.
mnist_ds_recipe() {
    local base_epochs=$1 ft=$2 uniform_epochs=$3 base=$4 out=$5 seed
    $X train    zoo:mnist-ds $MNIST --epochs "$base_epochs" --out "$base"
    for seed in 42 1; do
        $X compress zoo:mnist-ds $MNIST --ram 2500 --flash 4500 --macs 30M --epochs $((15 + ft)) --finetune-epochs "$ft" --from "$base" --seed $seed --out "$out-s$seed"
    done
    $X l1       zoo:mnist-ds $MNIST --ram 2500 --flash 4500 --macs 30M --epochs "$ft" --from "$base"
    $X uniform  zoo:mnist-ds $MNIST --ram 2500 --flash 4500 --macs 30M --epochs "$uniform_epochs"
}
mnist_ds_recipe 10 15 15 "$RUNS/mnist-ds-base" "$RUNS/mnist-ds"
# The recipe that meets 99.0 %: a 20-epoch base, 15 pruning + 25 fine-tune epochs; baselines with the
# same fine-tune length (L1) and the same total epochs (uniform).
mnist_ds_recipe 20 25 40 "$RUNS/mnist-ds-base20" "$RUNS/mnist-ds-b20"
# 1.5x tighter.
$X compress zoo:mnist-wide $MNIST --ram 1700 --flash 3000 --macs 30M --epochs 12 --from "$RUNS/mnist-wide-base" --out "$RUNS/mnist-tight-final"

# Speech Commands (speaker-disjoint split of the shared v0.02 test set): DS-CNN to half its peak
# memory (16,000 B -> 8,000 B) and half its MACs (2,656,768 -> 1,328,384).
$X train    zoo:ds-cnn $SPEECH --epochs 30 --out "$RUNS/dscnn-base"
$X compress zoo:ds-cnn $SPEECH --ram 8000 --macs 1328384 --epochs 20 --from "$RUNS/dscnn-base" --out "$RUNS/dscnn-final"
$X uniform  zoo:ds-cnn $SPEECH --ram 8000 --macs 1328384 --epochs 20
$X l1       zoo:ds-cnn $SPEECH --ram 8000 --macs 1328384 --epochs 20 --from "$RUNS/dscnn-base"

# Overhead: plain train and compress for the same epochs, one process, same data.
$X overhead zoo:mnist-wide $MNIST --ram 2500 --flash 4500 --macs 30M --epochs 6 --limit 20000
