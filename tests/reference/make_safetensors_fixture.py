#!/usr/bin/env python3
"""Writes tests/reference/safetensors_fixture.safetensors with Python's struct + json only, so the
C++ reader is checked against a file that tilegrad's writer did not produce.

The values follow formulas that tests/test_safetensors.cpp recomputes; the 16-bit floats are
rounded by numpy (f16) and torch (bf16), independently of tilegrad's converters. On purpose the
header differs from tilegrad's own: Python's default JSON separators (with spaces), keys in an
order different from the data order, and metadata last.

Run from the repository root:  python3 tests/reference/make_safetensors_fixture.py
"""
import json
import os
import struct
import sys

try:
    import numpy as np
    import torch
except ImportError as missing:  # the yardsticks are not part of `make deps`
    sys.exit(f"{os.path.basename(__file__)}: {missing.name} is not installed; `make deps-bench` installs it")

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "safetensors_fixture.safetensors")


def float_values(n):
    # (i - 2.5) / 3 in double, then rounded: thirds are inexact in every format.
    return [(i - 2.5) / 3.0 for i in range(n)]


def main():
    # (name, safetensors dtype, shape, raw little-endian bytes), in data order.
    tensors = [
        ("f32", "F32", [2, 3], np.array(float_values(6), dtype="<f4").tobytes()),
        ("bf16", "BF16", [3, 1, 2],
         torch.tensor(float_values(6), dtype=torch.float64).to(torch.bfloat16).view(torch.int16).numpy()
         .astype("<i2").tobytes()),
        ("f16", "F16", [5], np.array(float_values(5), dtype="<f2").tobytes()),
        ("empty", "F32", [0, 3], b""),
        ("i32", "I32", [5], np.array([-2147483648, -1, 0, 7, 2147483647], dtype="<i4").tobytes()),
        ("u8", "U8", [2, 2, 2], bytes([0, 1, 127, 128, 200, 254, 255, 3])),
        ("scalar", "F32", [], struct.pack("<f", 3.5)),
    ]
    header = {}
    data = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    # Reverse the key order so a reader must sort by offset to recover the data order.
    header = dict(reversed(list(header.items())))
    header["__metadata__"] = {"format": "pt", "source": "make_safetensors_fixture.py"}
    text = json.dumps(header).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(OUT, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(data)
    print(f"wrote {OUT} ({8 + len(text) + len(data)} bytes)")


if __name__ == "__main__":
    main()
