#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_c_api (native/fuzz/corpus/c_api): one small program per step kind
of fuzz_c_api.cpp's switch, each starting by creating four 64-byte buffers (slots 0-3) filled with
small floats, so that libFuzzer starts from calls that pass validation and reach the kernels."""
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "corpus", "c_api")
os.makedirs(out, exist_ok=True)
SIZE_64 = 150  # Input::integer(): a byte in 128..239 picks edges[b % 28]; edges[10] is 64
prelude = b""
for slot in range(4):
    data = b"".join(struct.pack("<f", 0.25 * (i % 7) - 0.5) for i in range(16))  # 64 bytes
    prelude += bytes([0, slot, SIZE_64]) + data
for kind in range(36):
    # the step, then 48 argument bytes: small sizes (2) and handles of slots 0-3 in turn
    args = bytes((2 if i % 3 else i // 3 % 4) for i in range(48))
    with open(os.path.join(out, f"step_{kind:02d}"), "wb") as f:
        f.write(prelude + bytes([kind]) + args)
print(f"wrote 36 seeds to {out}")
