#!/usr/bin/env python3
"""check-vzeroupper.py: every AVX2 / AVX-512 function of the CPU backend hands the registers back clean.

The *_avx2.cpp and *_avx512.cpp kernels are called from code built for baseline x86-64 (SSE). When an
AVX function returns with the upper halves of the ymm/zmm registers still in use, every legacy-SSE
instruction after it runs slowly until the next vzeroupper: on the Zen 5 CI machine, the SSE-built
depthwise convolution ran at 5 GFLOP/s after an AVX2 GEMM against 18 after an AVX-512 one (issue 16).
Compilers insert vzeroupper before returning, except from a function that takes 256/512-bit
arguments (its caller is assumed to be AVX code) and then on a tail call into such a function: that
is how gemm_micro_kernel_avx2 handed its row kernels' dirty state back to gemm.cpp.

This compiles each ISA file as the library does (-O3, its -m flags), disassembles it, and for every
function without vector arguments walks back from each return and each indirect tail call: reaching
a vzeroupper is clean, reaching an instruction that names a ymm/zmm register first is dirty (a jump
or another return first: not judged). Prints one line per dirty exit and ends with "N passed, N failed".

  scripts/check-vzeroupper.py                 compile native/kernels/cpu/*_avx2.cpp, *_avx512.cpp ($CXX or g++)
  scripts/check-vzeroupper.py FILE.so|FILE.o  check an already built object (e.g. a library of an older commit)
"""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "native")
FLAGS = ["-O3", "-std=gnu++17", "-fno-math-errno", "-fPIC", "-DKN_BUILDING_LIBRARY",
         "-Iinclude", "-Icore", "-Ikernels", "-Ikernels/cpu"]
ISA_FLAGS = {"_avx2.cpp": ["-mavx2", "-mfma"],
             "_avx512.cpp": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mfma", "-mavx2"]}
HEADER = re.compile(r"^[0-9a-f]+ <(.*)>:$")
WIDE = re.compile(r"%[yz]mm")
EXIT = re.compile(r"\tret\b|\tjmp\s+\*")
STOP = re.compile(r"\tjmp\s|\tret\b")


def functions(disassembly):
    name, body = None, []
    for line in disassembly.splitlines():
        m = HEADER.match(line)
        if m:
            if name is not None:
                yield name, body
            name, body = m.group(1), []
        elif name is not None:
            body.append(line)
    if name is not None:
        yield name, body


def dirty_exits(name, body):
    if "__vector(" in name or not any(WIDE.search(l) for l in body):
        return []  # vector arguments: an internal kernel whose caller cleans up; or no wide registers
    found = []
    for i, line in enumerate(body):
        if not EXIT.search(line):
            continue
        for j in range(i - 1, -1, -1):
            if "vzeroupper" in body[j]:
                break
            if WIDE.search(body[j]):
                found.append(line.strip())
                break
            if STOP.search(body[j]):
                break
    return found


def check(path):
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", path], check=True,
                          capture_output=True, text=True).stdout
    bad = 0
    for name, body in functions(text):
        for exit_line in dirty_exits(name, body):
            print(f"check-vzeroupper: {os.path.basename(path)}: {name} returns with ymm/zmm in use at: {exit_line}")
            bad += 1
    return bad


def main():
    if len(sys.argv) > 1:
        objects = sys.argv[1:]
        tmp = None
    else:
        tmp = tempfile.TemporaryDirectory()
        cxx = os.environ.get("CXX", "g++")
        cpu = os.path.join(ROOT, "kernels", "cpu")
        objects = []
        for source in sorted(os.listdir(cpu)):
            flags = next((f for suffix, f in ISA_FLAGS.items() if source.endswith(suffix)), None)
            if flags is None:
                continue
            obj = os.path.join(tmp.name, source + ".o")
            subprocess.run([cxx, *FLAGS, *flags, "-c", os.path.join("kernels", "cpu", source), "-o", obj],
                           cwd=ROOT, check=True)
            objects.append(obj)
    passed = failed = 0
    for obj in objects:
        if check(obj):
            failed += 1
        else:
            passed += 1
    print(f"check-vzeroupper: {len(objects)} object(s), every exit of a function without vector arguments checked")
    print(f"check-vzeroupper: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
