#!/usr/bin/env python3
"""PyTorch peer of `./train FILE --arch lstm`: the same LSTM language model, the same tokens, the
same batches, the same optimizer and schedule, so that validation losses and tokens/s compare
like for like.

  python3 bench/torch/train_lstm.py data/corpus/kjv.txt --layers 2 --embd 256 --block 128 \
      --batch 32 --steps 200 --threads 2

The model is nn/lstm_lm.h's, with its parameter names:
  wte = Embedding(V, H) -> rnn = LSTM(H, H, layers, batch_first, dropout between layers)
      -> drop = Dropout -> lm_head = Linear(H, V)
initialised as PyTorch initialises each layer by default (as tilegrad does, from its own draws).
The tokens, the split, the batches (tilegrad's Generator re-implemented), AdamW (betas 0.9, 0.95,
decay on 2-D weights only), the warmup + cosine schedule and the clipping are train_gpt.py's,
whose helpers this script imports.

With --ckpt RUN (a ./train --arch lstm run folder, or one of its .safetensors files) it instead
loads that checkpoint into the same module and greedy-decodes --tokens tokens after --prompt,
printing the text exactly as `./generate --ckpt RUN --temperature 0` does (the prompt, the
tokens, a newline), so the two outputs can be compared byte for byte.
"""
import argparse
import json
import os
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_gpt import (Generator, add_schedule_args, batch, char_symbols, cosine_lr, encode_corpus,  # noqa: E402
                       resolve_schedule_defaults)


class LSTMLanguageModel(nn.Module):
    def __init__(self, V, H, L, dropout):
        super().__init__()
        self.wte = nn.Embedding(V, H)
        self.rnn = nn.LSTM(H, H, L, batch_first=True, dropout=dropout if L > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.lm_head = nn.Linear(H, V)

    def forward(self, idx, state=None):
        out, state = self.rnn(self.wte(idx), state)
        return self.lm_head(self.drop(out)), state

    def loss(self, idx, targets):
        logits, _ = self(idx)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


# ---- loading a ./train checkpoint ----------------------------------------------------------------

def read_safetensors(path):
    """The model's tensors ("model.*", F32 in a CPU run) and the metadata of a ./train checkpoint."""
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    metadata = header.pop('__metadata__', {})
    tensors = {}
    for name, entry in header.items():
        if not name.startswith('model.'):
            continue  # the optimizer's and the task's tensors
        if entry['dtype'] != 'F32':
            raise SystemExit(f"{path}: {name} is {entry['dtype']}; only f32 models (fp32 runs) are read here")
        begin, end = entry['data_offsets']
        tensors[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=torch.float32).reshape(entry['shape'])
    return tensors, metadata


def greedy(a):
    path = a.ckpt
    if os.path.isdir(path):
        path = next(p for p in (os.path.join(path, 'best.safetensors'), os.path.join(path, 'last.safetensors'))
                    if os.path.exists(p))
    tensors, meta = read_safetensors(path)
    arch = json.loads(meta['architecture'])
    if arch.get('model') != 'lstm':
        raise SystemExit(f"{path} holds a {arch.get('model')} model, not an LSTM")
    tok = json.loads(meta['tokenizer'])
    if tok['type'] != 'char':
        raise SystemExit(f"{path}: only the char tokenizer is decoded here")
    symbols = tok['symbols']
    ids = {s: i for i, s in enumerate(symbols)}
    model = LSTMLanguageModel(arch['vocab_size'], arch['n_embd'], arch['n_layer'], 0.0)
    model.load_state_dict({k[len('model.'):]: v for k, v in tensors.items() if k.startswith('model.')})
    model.eval()

    def text(symbol):
        return bytes([symbol - 0x110000]) if symbol >= 0x110000 else chr(symbol).encode('utf-8')

    prompt = a.prompt.encode('utf-8') if a.prompt else b'\n'
    context = [ids[s] for s in char_symbols(prompt)]
    out = bytearray(a.prompt.encode('utf-8'))
    with torch.no_grad():
        logits, state = model(torch.tensor([context]))
        for _ in range(a.tokens):
            next_id = int(torch.argmax(logits[0, -1]))  # the first of equal maxima: the lower id, as ./generate
            out += text(symbols[next_id])
            logits, state = model(torch.tensor([[next_id]]), state)
    sys.stdout.buffer.write(bytes(out) + b'\n')


# ---- training ------------------------------------------------------------------------------------

def train(a):
    resolve_schedule_defaults(a)
    torch.manual_seed(a.seed)

    ids, V = encode_corpus(a.corpus, a.tokenizer_json)
    tokens = torch.tensor(ids, dtype=torch.long)
    n_val = round(len(tokens) * a.val_fraction)
    train_tokens, val = tokens[:len(tokens) - n_val], tokens[len(tokens) - n_val:]
    model = LSTMLanguageModel(V, a.embd, a.layers, a.dropout)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': a.weight_decay},
                             {'params': no_decay, 'weight_decay': 0.0}], lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: {len(train_tokens):,} train + {len(val):,} "
          f"val tokens, vocab {V}, LSTM {a.layers} x {a.embd}, {nparams:,} parameters")

    def validation_loss():
        gen = Generator(a.seed ^ 0x76616c6964)  # the text task's fixed validation batches
        model.eval()
        with torch.no_grad():
            total = sum(model.loss(*batch(val, a.batch, a.block, gen)).item() for _ in range(a.eval_batches))
        model.train()
        return total / a.eval_batches

    gen = Generator(a.seed)
    step_seconds, val_loss = [], float('nan')
    for step in range(a.steps):
        start = time.perf_counter()
        lr = cosine_lr(step, a.warmup, a.steps, a.lr, a.min_lr)
        for group in opt.param_groups:
            group['lr'] = lr
        opt.zero_grad(set_to_none=True)
        loss = model.loss(*batch(train_tokens, a.batch, a.block, gen))
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        seconds = time.perf_counter() - start
        if step >= 2:  # the first steps pay for allocation and thread start-up
            step_seconds.append(seconds)
        s = step + 1
        if s % a.log_every == 0 or s == a.steps or s == 1:
            print(f"step {s}/{a.steps} | loss {loss.item():.4f} | lr {lr:.2e} | {seconds * 1000:.1f} ms/step",
                  flush=True)
        if s % a.eval_every == 0 or s == a.steps:
            val_loss = validation_loss()
            print(f"step {s}: val loss {val_loss:.4f}", flush=True)
    # The median step: on a shared machine the mean is at the mercy of the slowest few.
    ms = 1000 * (sorted(step_seconds)[len(step_seconds) // 2] if step_seconds else float('nan'))
    print(f"torch: {a.steps} steps, median {ms:.1f} ms/step, {a.batch * a.block / (ms / 1000):,.0f} tok/s "
          f"(training steps only), final val loss {val_loss:.4f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('corpus', nargs='?', help='the text file (training)')
    p.add_argument('--ckpt', default='', help='greedy-decode from this ./train --arch lstm run instead of training')
    p.add_argument('--prompt', default='', help='with --ckpt: the text to continue (default: a newline)')
    p.add_argument('--tokens', type=int, default=200, help='with --ckpt: tokens to decode')
    p.add_argument('--tokenizer-json', default='', help="a ./train run's tokenizer.json (default: char from the file)")
    p.add_argument('--layers', type=int, default=2)
    p.add_argument('--embd', type=int, default=256)
    p.add_argument('--block', type=int, default=128)
    p.add_argument('--dropout', type=float, default=0.0)
    p.add_argument('--batch', type=int, default=12)
    p.add_argument('--steps', type=int, default=200)
    add_schedule_args(p)
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    if a.ckpt:
        return greedy(a)
    if not a.corpus:
        p.error('a corpus is needed to train (or --ckpt to decode)')
    return train(a)


if __name__ == '__main__':
    sys.exit(main())
