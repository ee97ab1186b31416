#!/usr/bin/env python3
"""PyTorch peer of ./train: the same GPT, the same tokens, the same batches, the same optimizer
and schedule, so that validation losses and tokens/s compare like for like.

  python3 bench/torch/train_gpt.py data/corpus/kjv.txt --layers 6 --heads 6 --embd 384 --block 256 \
      --batch 64 --steps 500 --threads 2

What is shared with ./train, exactly:
  - tokens: the char vocabulary (sorted distinct code points of the file), or with
    --tokenizer-json RUN/tokenizer.json the run's own vocabulary (char or byte-level BPE);
  - the split: the last --val-fraction of the tokens validate;
  - the batches: window starts come from a re-implementation of tilegrad's Generator
    (xoshiro256** seeded by splitmix64, rejection-sampled below(n)), so step k sees the same
    windows in both programs, and validation uses the same fixed batches;
  - the model: GPT-2 (pre-LayerNorm blocks, tanh GELU MLP 4x, causal attention, learned
    positions, biases, lm_head tied to wte), GPT-2 initialisation (N(0, 0.02), residual
    projections N(0, 0.02 / sqrt(2 * layers)));
  - AdamW(betas 0.9, 0.95, eps 1e-8), decay on 2-D weights only, warmup + cosine to --min-lr,
    global-norm clipping, gradient accumulation.
Not shared: the initial weights' random draws (torch's generator), so runs agree in distribution,
not bit for bit.

Prints a status line every --log-every steps, validation losses, and a last line
  "torch: N steps, X ms/step, Y tok/s (training steps only), final val loss Z".
Peak memory: run under /usr/bin/time -v and read "Maximum resident set size".
"""
import argparse
import json
import math
import os
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as missing:  # the yardsticks are not part of `make deps`
    sys.exit(f"{os.path.basename(__file__)}: {missing.name} is not installed; `make deps-bench` installs it")

MASK64 = (1 << 64) - 1


class Generator:
    """tilegrad's tensor/random.h Generator: xoshiro256**, seeded through splitmix64."""

    def __init__(self, seed):
        x = seed & MASK64
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & MASK64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def _rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & MASK64

    def next_u64(self):
        s = self.s
        result = (self._rotl((s[1] * 5) & MASK64, 7) * 9) & MASK64
        t = (s[1] << 17) & MASK64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self._rotl(s[3], 45)
        return result

    def below(self, n):
        limit = MASK64 - (MASK64 % n)
        while True:
            x = self.next_u64()
            if x < limit:
                return x % n


# ---- tokens ------------------------------------------------------------------------------------

def pretokenize(data):
    """data/bpe_tokenizer.cpp's chunking (GPT-2's pattern on bytes)."""
    def cls(c):
        if 97 <= c <= 122 or 65 <= c <= 90 or c >= 0x80: return 'L'
        if 48 <= c <= 57: return 'D'
        if c == 32: return 'S'
        if c in (10, 9, 13, 12, 11): return 'W'
        return 'P'
    n, pos, chunks = len(data), 0, []
    while pos < n:
        end, k = pos, cls(data[pos])
        if k == 'S' and pos + 1 < n and cls(data[pos + 1]) not in 'SW':
            k, end = cls(data[pos + 1]), pos + 1
        if k not in 'SW':
            while end < n and cls(data[end]) == k: end += 1
        else:
            while end < n and cls(data[end]) in 'SW': end += 1
            if end < n and end - pos > 1 and cls(data[end - 1]) == 'S': end -= 1
        chunks.append(data[pos:end])
        pos = end
    return chunks


def bpe_encode(data, merges):
    rank = {(a, b): 256 + i for i, (a, b) in enumerate(merges)}
    cache, out = {}, []
    for chunk in pretokenize(data):
        ids = cache.get(chunk)
        if ids is None:
            ids = list(chunk)
            while len(ids) > 1:
                best = min((rank.get(p, 1 << 62) for p in zip(ids, ids[1:])))
                if best == 1 << 62: break
                a, b = merges[best - 256]
                merged, i = [], 0
                while i < len(ids):
                    if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b: merged.append(best); i += 2
                    else: merged.append(ids[i]); i += 1
                ids = merged
            cache[chunk] = ids
        out.extend(ids)
    return out


def char_symbols(data):
    """data/char_tokenizer.cpp's symbols: code points, invalid bytes as 0x110000 + byte."""
    text = data.decode('utf-8', errors='surrogateescape')
    return [0x110000 + (ord(c) - 0xDC00) if 0xDC80 <= ord(c) <= 0xDCFF else ord(c) for c in text]


def encode_corpus(path, tokenizer_json):
    data = open(path, 'rb').read()
    if tokenizer_json:
        tok = json.load(open(tokenizer_json))
        if tok['type'] == 'bpe':
            return bpe_encode(data, [tuple(m) for m in tok['merges']]), 256 + len(tok['merges'])
        ids = {s: i for i, s in enumerate(tok['symbols'])}
        return [ids[s] for s in char_symbols(data)], len(ids)
    symbols = char_symbols(data)
    ids = {s: i for i, s in enumerate(sorted(set(symbols)))}
    return [ids[s] for s in symbols], len(ids)


def batch(tokens, B, T, gen):
    starts = [gen.below(len(tokens) - T) for _ in range(B)]
    x = torch.stack([tokens[s:s + T] for s in starts])
    y = torch.stack([tokens[s + 1:s + T + 1] for s in starts])
    return x, y


# ---- model -------------------------------------------------------------------------------------

class Block(nn.Module):
    def __init__(self, C, H, dropout):
        super().__init__()
        self.H = H
        self.ln_1 = nn.LayerNorm(C)
        self.c_attn = nn.Linear(C, 3 * C)
        self.attn_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = [z.view(B, T, self.H, C // self.H).transpose(1, 2) for z in (q, k, v)]
        if hasattr(F, 'scaled_dot_product_attention'):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # torch < 2.0
            att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float('-inf'))
            y = F.softmax(att, dim=-1) @ v
        x = x + self.drop(self.attn_proj(y.transpose(1, 2).reshape(B, T, C)))
        return x + self.drop(self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate='tanh')))


class GPT(nn.Module):
    def __init__(self, V, T, L, H, C, dropout):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(T, C)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList([Block(C, H, dropout) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith('proj.weight') else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith('bias'):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(idx.shape[1])))
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def cosine_lr(step, warmup, max_steps, max_lr, min_lr):
    """optim/schedule.h's cosine_lr."""
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= max_steps:
        return min_lr
    r = (step - warmup) / (max_steps - warmup)
    return min_lr + 0.5 * (1 + math.cos(math.pi * r)) * (max_lr - min_lr)


def add_schedule_args(p):
    """The optimizer, schedule, evaluation and machine flags, with ./train's defaults (train_lstm.py too)."""
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--warmup', type=int, default=-1, help='default: 5%% of the steps, at most 100 (as ./train)')
    p.add_argument('--min-lr', type=float, default=-1, help='default: lr / 10')
    p.add_argument('--weight-decay', type=float, default=0.1)
    p.add_argument('--clip', type=float, default=1.0)
    p.add_argument('--seed', type=int, default=1337)
    p.add_argument('--val-fraction', type=float, default=0.1)
    p.add_argument('--eval-every', type=int, default=0, help='default: steps / 10, at most 250 (as ./train)')
    p.add_argument('--eval-batches', type=int, default=20)
    p.add_argument('--log-every', type=int, default=10)
    p.add_argument('--threads', type=int, default=0)


def resolve_schedule_defaults(a):
    """The defaults that depend on other flags, derived as ./train derives them."""
    if a.warmup < 0: a.warmup = min(100, a.steps // 20)
    if a.min_lr < 0: a.min_lr = a.lr / 10
    if a.eval_every == 0: a.eval_every = max(1, min(250, a.steps // 10))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('corpus')
    p.add_argument('--tokenizer-json', default='', help="a ./train run's tokenizer.json (default: char from the file)")
    p.add_argument('--layers', type=int, default=4)
    p.add_argument('--heads', type=int, default=4)
    p.add_argument('--embd', type=int, default=128)
    p.add_argument('--block', type=int, default=64)
    p.add_argument('--dropout', type=float, default=0.0)
    p.add_argument('--batch', type=int, default=12)
    p.add_argument('--grad-accum', type=int, default=1)
    p.add_argument('--steps', type=int, default=2000)
    add_schedule_args(p)
    a = p.parse_args()
    resolve_schedule_defaults(a)
    if a.threads: torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    ids, V = encode_corpus(a.corpus, a.tokenizer_json)
    tokens = torch.tensor(ids, dtype=torch.long)
    n_val = round(len(tokens) * a.val_fraction)
    train, val = tokens[:len(tokens) - n_val], tokens[len(tokens) - n_val:]
    model = GPT(V, a.block, a.layers, a.heads, a.embd, a.dropout)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': a.weight_decay},
                             {'params': no_decay, 'weight_decay': 0.0}], lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: {len(train):,} train + {len(val):,} val "
          f"tokens, vocab {V}, {nparams:,} parameters")

    def validation_loss():
        gen = Generator(a.seed ^ 0x76616c6964)  # programs/lib/trainer.cpp's fixed validation batches
        model.eval()
        with torch.no_grad():
            total = sum(model(*batch(val, a.batch, a.block, gen)).item() for _ in range(a.eval_batches))
        model.train()
        return total / a.eval_batches

    gen = Generator(a.seed)
    train_seconds, timed_steps, val_loss = 0.0, 0, float('nan')
    for step in range(a.steps):
        start = time.perf_counter()
        lr = cosine_lr(step, a.warmup, a.steps, a.lr, a.min_lr)
        for group in opt.param_groups:
            group['lr'] = lr
        opt.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for _ in range(a.grad_accum):
            loss = model(*batch(train, a.batch, a.block, gen))
            loss_sum += loss.item()
            (loss / a.grad_accum).backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        seconds = time.perf_counter() - start
        if step >= 2:  # the first steps pay for allocation and thread start-up
            train_seconds += seconds
            timed_steps += 1
        s = step + 1
        if s % a.log_every == 0 or s == a.steps or s == 1:
            print(f"step {s}/{a.steps} | loss {loss_sum / a.grad_accum:.4f} | lr {lr:.2e} | {seconds * 1000:.1f} ms/step",
                  flush=True)
        if s % a.eval_every == 0 or s == a.steps:
            val_loss = validation_loss()
            print(f"step {s}: val loss {val_loss:.4f}", flush=True)
    tokens_per_step = a.batch * a.block * a.grad_accum
    ms = 1000 * train_seconds / max(timed_steps, 1)
    print(f"torch: {a.steps} steps, {ms:.1f} ms/step, {tokens_per_step / (ms / 1000):,.0f} tok/s "
          f"(training steps only), final val loss {val_loss:.4f}")


if __name__ == '__main__':
    sys.exit(main())
