#!/bin/sh
# ./train --arch lstm against its PyTorch peer (bench/torch/train_lstm.py, PyTorch's CPU nn.LSTM)
# on the same corpus, model, batches, optimizer and schedule, one after the other in one run:
# both print the median training step's tokens/s and the final validation loss; then both
# greedy-decode the same prompt from our checkpoint and the outputs are compared byte for byte.
#
#   bench/lstm_lm.sh [CORPUS] [STEPS]        # defaults: data/corpus/kjv.txt (make data), 200
#   LAYERS=2 EMBD=256 BLOCK=128 BATCH=32 THREADS=2 bench/lstm_lm.sh
#
# Run it on a quiet machine: with other work on the cores both figures fall apart.
set -eu
CORPUS=${1:-data/corpus/kjv.txt}
STEPS=${2:-200}
LAYERS=${LAYERS:-2} EMBD=${EMBD:-256} BLOCK=${BLOCK:-128} BATCH=${BATCH:-32} THREADS=${THREADS:-2}
PYTHON=${PYTHON:-/usr/bin/python3}
[ -f "$CORPUS" ] || { echo "lstm_lm.sh: corpus '$CORPUS' is missing (make data, or pass a text file)" >&2; exit 1; }
[ -x ./train ] && [ -x ./generate ] || { echo "lstm_lm.sh: build first (make), and run from the repository root" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SHAPE="--layers $LAYERS --embd $EMBD --block $BLOCK --batch $BATCH --steps $STEPS --threads $THREADS"

echo "== tilegrad: ./train $CORPUS --arch lstm $SHAPE"
./train "$CORPUS" --arch lstm $SHAPE --log-every 1 --sample-every 1000000000 --out "$WORK/run" > "$WORK/train.log"
grep -E '^(model|step [0-9]+: val)' "$WORK/train.log"
# The median step's tokens/s, over the steps after the first two (as the peer times them).
awk -F, 'NR > 3 && $6 != "" { print $6 }' "$WORK/run/metrics.csv" | sort -g |
  awk -v steps="$STEPS" -v val="$(grep -E '^step [0-9]+: val' "$WORK/train.log" | tail -1 | awk '{print $5}')" \
    '{ v[NR] = $1 } END { printf "tilegrad: %d steps, median %.0f tok/s, final val loss %s\n", steps, v[int((NR + 1) / 2)], val }'

echo "== PyTorch: bench/torch/train_lstm.py $CORPUS $SHAPE"
"$PYTHON" bench/torch/train_lstm.py "$CORPUS" $SHAPE | grep -E '^(torch|step [0-9]+: val)'

echo "== greedy decoding of our checkpoint, 200 tokens after 'And God said'"
./generate --ckpt "$WORK/run" --prompt 'And God said' --tokens 200 --temperature 0 --threads "$THREADS" > "$WORK/ours.txt"
"$PYTHON" bench/torch/train_lstm.py --ckpt "$WORK/run" --prompt 'And God said' --tokens 200 --threads "$THREADS" > "$WORK/torch.txt"
cat "$WORK/ours.txt"
if cmp -s "$WORK/ours.txt" "$WORK/torch.txt"; then echo "PyTorch decodes the same text from our checkpoint"
else echo "PyTorch decodes differently:"; cat "$WORK/torch.txt"; fi
