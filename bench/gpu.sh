#!/usr/bin/env bash
# The whole GPU check in one command, on a machine with an NVIDIA GPU: build, GPU tests, kernel
# benchmarks against cuBLAS and PyTorch, end-to-end training throughput against PyTorch, and
# ./train in fp32/bf16/fp16 on the default corpus. Every step's full output goes to a log file;
# at the end $OUT (default gpu-logs/) holds three files: summary.txt, tests.log and logs.tar.gz
# with every log (few files, so that a remote runner that returns only a handful brings them all).
#
#   bench/gpu.sh            everything (build, test, kernels, train-speed, train-loss)
#   bench/gpu.sh test       one phase; phases: build test kernels train-speed train-loss
#   bench/gpu.sh test kernels   several phases in order
#
# The PyTorch peers are bench/torch/torch_kernels.py, torch_conv.py, torch_cnn.py and torch_gpt.py (`make deps-bench` installs
# PyTorch; on a GPU machine use a CUDA build of it, PYTHON=... picks the interpreter); without
# PyTorch the peer figures are skipped and the rest runs.
# The default corpus is data/corpus/kjv.txt (`make data` writes it; copy it along when the GPU
# machine cannot install Debian's bible-kjv). Each phase fits in a few minutes on an H100.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-gpu-logs}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOGS=$(mktemp -d /tmp/tilegrad-gpu-XXXXXX)  # every log and run folder; packed into $OUT at exit
SUMMARY="$LOGS/summary.txt"
pack_logs() {
  cp "$SUMMARY" "$OUT/summary.txt" 2>/dev/null
  [ -f "$LOGS/tests.log" ] && cp "$LOGS/tests.log" "$OUT/tests.log"
  tar czf "$OUT/logs.tar.gz" -C "$LOGS" --exclude='run_*' . 2>/dev/null
}
trap pack_logs EXIT
PYTHON=${PYTHON:-python3}
JOBS=$(nproc)
PHASES=("$@")
[ ${#PHASES[@]} -eq 0 ] && PHASES=(build test kernels train-speed train-loss)

say() { echo "$*" | tee -a "$SUMMARY"; }
# Runs a command with its output in <logs>/<name>.log; says how it ended.
logged() {
  local name=$1; shift
  local start=$SECONDS
  "$@" >"$LOGS/$name.log" 2>&1
  local rc=$?
  say "  $name: exit $rc in $((SECONDS - start)) s ($name.log)"
  return $rc
}

if ! nvidia-smi -L >/dev/null 2>&1 && [ ! -e /dev/nvidia0 ]; then
  say "bench/gpu.sh: no NVIDIA GPU visible (nvidia-smi -L failed, no /dev/nvidia0); nothing to do"
  exit 0
fi
say "== $(date -u '+%Y-%m-%d %H:%M UTC') $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null)"
say "   commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"

ANCHORS=bench/torch
if ! "$PYTHON" -c 'import torch' >/dev/null 2>&1; then
  ANCHORS=""
  say "   no PyTorch for $PYTHON: the peer figures are skipped (\`make deps-bench\` installs it)"
fi

phase_build() {
  if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
    # No toolkit here: use a build made elsewhere and carried along (build/, ./train, ./generate).
    if [ -x build/tilegrad_tests ] && [ -x build/bench/bench_gpu_train ] && [ -x train ]; then
      say "-- build: no nvcc on this machine; using the carried build/"
      return 0
    fi
    say "-- build: no nvcc on this machine and no carried build/; cannot go on"
    return 1
  fi
  say "-- build (CUDA=1, $JOBS jobs)"
  logged build make -j"$JOBS" CUDA=1 all bench build/tilegrad_tests
}

phase_test() {
  say "-- tests (the whole suite; the GPU ones must run, not skip)"
  # TrainProgramGpu trains on the default corpus when it is there (its own text otherwise).
  [ -f data/corpus/kjv.txt ] || make data >"$LOGS/make_data.log" 2>&1 || say "  (no data/corpus/kjv.txt: the GPU training tests use the repository's text)"
  logged tests ./build/tilegrad_tests
  local rc=$?
  say "  $(tail -n 1 "$LOGS/tests.log")"
  grep -E '^\[  SKIPPED \]' "$LOGS/tests.log" | sed 's/^/  /' | tee -a "$SUMMARY"
  grep -E '^\[  FAILED  \]' "$LOGS/tests.log" | sed 's/^/  /' | sort -u | tee -a "$SUMMARY"
  return $rc
}

phase_kernels() {
  say "-- kernels: ours vs cuBLAS (GEMM) and vs PyTorch SDPA (attention)"
  logged bench_gpu_gemm ./build/bench/bench_gpu_gemm
  sed 's/^/  /' "$LOGS/bench_gpu_gemm.log" | tee -a "$SUMMARY"
  logged bench_gpu_attention ./build/bench/bench_gpu_attention
  sed 's/^/  /' "$LOGS/bench_gpu_attention.log" | tee -a "$SUMMARY"
  # conv2d per layer of cnn-ref and resnet (fwd, dgrad, wgrad) against cuDNN, channels_last.
  logged bench_gpu_conv ./build/bench/bench_gpu_conv
  sed 's/^/  /' "$LOGS/bench_gpu_conv.log" | tee -a "$SUMMARY"
  if [ -n "$ANCHORS" ]; then
    logged torch_kernels "$PYTHON" "$ANCHORS/torch_kernels.py"
    grep -E 'cublas|sdpa|copy' "$LOGS/torch_kernels.log" | sed 's/^/  peer: /' | tee -a "$SUMMARY"
    logged torch_conv "$PYTHON" "$ANCHORS/torch_conv.py" cuda
    grep -E '^conv' "$LOGS/torch_conv.log" | sed 's/^/  peer: /' | tee -a "$SUMMARY"
  else
    say "  peer kernels skipped: no PyTorch (see the top of this script)"
  fi
}

# One configuration: ours and the peer with the same arguments (torch_gpt.py's).
train_pair() {
  local name=$1; shift
  logged "ours_$name" ./build/bench/bench_gpu_train cuda "$@"
  sed 's/^/  ours: /' "$LOGS/ours_$name.log" | tee -a "$SUMMARY"
}
peer() {
  local name=$1; shift
  [ -z "$ANCHORS" ] && return 0
  logged "torch_$name" "$PYTHON" "$ANCHORS/torch_gpt.py" cuda "$@"
  grep '^torch' "$LOGS/torch_$name.log" | sed 's/^/  peer: /' | tee -a "$SUMMARY"
}

phase_train_speed() {
  say "-- training throughput, ours vs PyTorch 2.x (torch_gpt.py), same model and batch"
  # The char model: 6 layers, 6 heads, 384 wide, block 256, batch 64, vocab 65.
  train_pair char_bf16 6 6 384 256 64 50 bf16 - 65
  train_pair char_fp16 6 6 384 256 64 50 fp16 - 65
  train_pair char_fp32 6 6 384 256 64 20 fp32 - 65
  peer char_bf16_eager 6 6 384 256 64 50 bf16 eager 65
  peer char_bf16_compiled 6 6 384 256 64 50 bf16 compile 65
  # GPT-2 124M: 12/12/768, block 1024, batch 16, vocab 50304.
  train_pair gpt2_bf16 12 12 768 1024 16 20 bf16 - 50304
  peer gpt2_bf16_compiled 12 12 768 1024 16 20 bf16 compile 50304
  peer gpt2_bf16_eager 12 12 768 1024 16 20 bf16 eager 50304
  # cnn-ref at batch 256 on Fashion-MNIST (`make data`): ./train's img/s (its last log line) next
  # to PyTorch eager, channels_last, in the same call.
  if [ -f data/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    for dtype in "fp32" "bf16 --optimizer adamw"; do
      local tag=${dtype%% *}
      logged "ours_cnn_ref_$tag" ./train data/fashion-mnist --model cnn-ref --batch 256 --steps 100 --device cuda \
        --dtype $dtype --log-every 50 --eval-every 100000 --out "$LOGS/run_cnn_ref_$tag"
      grep 'img/s' "$LOGS/ours_cnn_ref_$tag.log" | tail -1 | sed "s/^/  ours cnn-ref $tag: /" | tee -a "$SUMMARY"
    done
  else
    say "  cnn-ref end to end skipped: no data/fashion-mnist (make data)"
  fi
  if [ -n "$ANCHORS" ]; then
    logged torch_cnn_ref "$PYTHON" "$ANCHORS/torch_cnn.py" cuda 256 50 channels_last
    grep '^torch' "$LOGS/torch_cnn_ref.log" | sed 's/^/  peer: /' | tee -a "$SUMMARY"
  fi
}

phase_train_loss() {
  say "-- ./train on the default corpus: fp32 vs bf16 vs fp16 validation loss (small preset)"
  local corpus=data/corpus/kjv.txt
  if [ ! -f "$corpus" ]; then make data >"$LOGS/make_data.log" 2>&1 || { say "  skipped: no $corpus (make data failed)"; return 1; }; fi
  local rc=0
  for dtype in fp32 bf16 fp16; do
    rm -rf "$LOGS/run_$dtype"
    logged "train_$dtype" ./train "$corpus" --device cuda --dtype "$dtype" --model small --steps 600 \
      --eval-every 200 --sample-every 600 --out "$LOGS/run_$dtype" --mem-stats || rc=1
    grep -E 'val loss|done:|peak|skipped' "$LOGS/train_$dtype.log" | tail -n 4 | sed "s/^/  $dtype: /" | tee -a "$SUMMARY"
  done
  return $rc
}

status=0
for phase in "${PHASES[@]}"; do
  case "$phase" in
    build) phase_build || status=1 ;;
    test) phase_test || status=1 ;;
    kernels) phase_kernels || status=1 ;;
    train-speed) phase_train_speed || status=1 ;;
    train-loss) phase_train_loss || status=1 ;;
    *) echo "bench/gpu.sh: unknown phase '$phase' (build test kernels train-speed train-loss)" >&2; exit 2 ;;
  esac
done
say "== done, exit $status; logs in $OUT/ (summary.txt, tests.log, logs.tar.gz)"
exit $status
