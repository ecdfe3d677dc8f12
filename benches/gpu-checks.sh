#!/usr/bin/env bash
# sinter's checks and figures on a machine with a real GPU, building nothing there: `sinter info`,
# the kernel tests with the GPU required, tuning (where this build has `sinter tune`), matrix
# products at 1024/2048/4096 as a fraction of the card's f32 peak, the CNN and char-transformer
# training steps, and PyTorch's CNN step on the same GPU; a summary table last.
#
# Usage:
#   benches/gpu-checks.sh --collect DIR [PROFILE]   on the build machine: copies the `sinter`
#                                                   binary and the kernel test binaries of
#                                                   target/PROFILE (default release; build them
#                                                   first: cargo build --release && cargo test
#                                                   --release --no-run) into DIR, stripped
#   benches/gpu-checks.sh [--dry] [BIN_DIR]         runs the checks with the binaries in BIN_DIR
#                                                   (a DIR made by --collect, or target/release)
# --dry runs every step on the software adapter (lavapipe) with small sizes, few steps and only
# the MLP tuned: the test command runs it so the script keeps working while no GPU is at hand.
# The card's f32 peak comes from GPU_F32_PEAK_TFLOPS, else from nvidia-smi's name for the cards
# listed below.
set -euo pipefail
cd "$(dirname "$0")/.."

KERNEL_TESTS=(kernels_matmul kernels_conv kernels_attention kernels_elementwise kernels_loss_optim
    kernels_select kernels_batch_norm kernels_rms_norm kernels_sequence kernels_layout)

# The newest executable named NAME or NAME-<hash> in DIR or DIR/deps.
find_binary() {
    local dir=$1 name=$2 path
    for path in "$dir/$name" "$dir/deps/$name"; do
        if [ -x "$path" ] && [ -f "$path" ]; then echo "$path"; return; fi
    done
    find "$dir" "$dir/deps" -maxdepth 1 -type f -perm -u+x -name "$name-*" -printf '%T@ %p\n' \
        2>/dev/null | sort -rn | head -n1 | cut -d' ' -f2-
}

if [ "${1:-}" = "--collect" ]; then
    dest=${2:?--collect needs a folder}
    from=target/${3:-release}
    mkdir -p "$dest"
    for name in sinter "${KERNEL_TESTS[@]}"; do
        bin=$(find_binary "$from" "$name")
        if [ -z "$bin" ]; then
            echo "gpu-checks: no $name in $from: build it first (see the usage above)" >&2
            exit 1
        fi
        cp "$bin" "$dest/$name"
        strip "$dest/$name" 2>/dev/null || true
    done
    echo "gpu-checks: binaries in $dest"
    exit 0
fi

dry=0
if [ "${1:-}" = "--dry" ]; then dry=1; shift; fi
bins=${1:-target/release}
sinter=$(find_binary "$bins" sinter)
if [ -z "$sinter" ]; then
    echo "gpu-checks: no sinter binary in $bins" >&2
    exit 1
fi
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"

if [ $dry = 1 ]; then
    device=software sizes=64,128 round_ms=30 warmup=1 steps=1 tests=(kernels_elementwise)
    tune_models=(--model mlp)
else
    device=gpu sizes=1024,2048,4096 round_ms=300 warmup=3 steps=20 tests=("${KERNEL_TESTS[@]}")
    tune_models=()
fi
export SINTER_REQUIRE_ADAPTER=1 SINTER_DEVICE=$device

peak=${GPU_F32_PEAK_TFLOPS:-}
if [ -z "$peak" ] && command -v nvidia-smi >/dev/null; then
    # Dense f32 (non-tensor-core) peaks from the vendor's data sheets.
    case "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1)" in
        *H200*) peak=67 ;;
        *H100*SXM* | *"H100 80GB HBM3"*) peak=67 ;;
        *H100*PCIe* | *H100*) peak=51 ;;
        *A100*) peak=19.5 ;;
        *L40S*) peak=91.6 ;;
        *"RTX 4090"*) peak=82.6 ;;
    esac
fi

step() { echo; echo "== $*"; }

step "sinter info"
"$sinter" info | tee "$out/info.txt"

step "kernel tests on the $device adapter (SINTER_REQUIRE_ADAPTER=1)"
failed=()
for name in "${tests[@]}"; do
    bin=$(find_binary "$bins" "$name")
    if [ -z "$bin" ]; then
        echo "$name: binary missing" >&2
        failed+=("$name (missing)")
        continue
    fi
    if "$bin" -q >"$out/$name.log" 2>&1; then
        echo "$name: $(grep -E '^test result' "$out/$name.log" | tail -n1)"
    else
        echo "$name: FAILED (log: $out/$name.log)"
        tail -n 20 "$out/$name.log"
        failed+=("$name")
    fi
done

step "tuning"
if "$sinter" tune --help >/dev/null 2>&1; then
    "$sinter" tune --device "$device" "${tune_models[@]}" | tee "$out/tune.txt"
else
    echo "this sinter has no 'tune' command: the static variant choice is measured"
fi

step "matrix products ($sizes)"
"$sinter" bench matmul --device "$device" --sizes "$sizes" --round-ms "$round_ms" |
    tee "$out/matmul.txt"

step "training steps"
for model in cnn char-transformer; do
    "$sinter" bench step --model "$model" --device "$device" --warmup "$warmup" --steps "$steps" |
        tee "$out/step-$model.txt"
done

step "PyTorch's CNN step on the same GPU"
torch_line="not run"
if [ $dry = 0 ] && python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    python3 benches/reference/pytorch_step.py --model cnn --device cuda | tee "$out/torch-cnn.txt"
    torch_line=$(tail -n1 "$out/torch-cnn.txt")
else
    echo "skipped: a dry run, or no python3 with a CUDA torch here"
fi

step "summary"
echo "device: $(grep -a -m1 '^SINTER_DEVICE=.*would use' "$out/info.txt" || true)"
# `matmul N³ VARIANT DEVICE ms GFLOP/s err`: the best GPU variant per size.
awk -v peak="$peak" '
    $1 == "matmul" && $3 != "gemm" && $4 != "cpu" {
        n = $2; if (!(n in best) || $6 > best[n]) { best[n] = $6; name[n] = $3 }
    }
    END {
        for (n in best) {
            share = peak != "" ? sprintf("%.1f%% of %s TFLOP/s", best[n] / (peak * 10), peak) \
                               : "peak unknown (set GPU_F32_PEAK_TFLOPS)"
            printf "matmul %-7s %-10s %9.1f GFLOP/s  %s\n", n, name[n], best[n], share
        }
    }' "$out/matmul.txt" | sort -k2 -n
for model in cnn char-transformer; do tail -n1 "$out/step-$model.txt"; done
echo "pytorch: $torch_line"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED kernel tests: ${failed[*]}"
    exit 1
fi
echo "all kernel tests passed"
