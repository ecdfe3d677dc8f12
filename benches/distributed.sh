#!/usr/bin/env bash
# Data-parallel throughput: images/s of the default CNN's training with 1 and 2 MPI ranks on this
# machine (and one process without MPI, for reference). Needs a sinter built with `--features mpi`:
#   cargo build --release --features mpi && benches/distributed.sh
# SINTER=path/to/sinter picks another binary; DEVICE (default cpu), STEPS (default 120: under one
# epoch, so no evaluation runs until the last step, and train excludes evaluation time anyway).
set -euo pipefail
cd "$(dirname "$0")/.."
sinter="${SINTER:-target/release/sinter}"
device="${DEVICE:-cpu}"
steps="${STEPS:-120}"
batch="${BATCH:-64}"
args=(train --device "$device" --steps "$steps" --batch "$batch" --quiet)
rate() { grep -o '[0-9]* images/s' | head -1; }

echo "default CNN, global batch $batch, $steps steps, device $device, $(nproc) cores"
echo "one process (no MPI):  $("$sinter" "${args[@]}" 2>/dev/null | rate)"
for n in 1 2; do
    # Open MPI binds each rank to one core by default for up to two ranks; a rank's thread pool
    # should have the cores the process was given (docs/distributed.md).
    echo "$n rank(s) over MPI:    $(mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$n" \
        "$sinter" "${args[@]}" --distributed 2>/dev/null | rate)"
done
