#!/bin/sh
# Rebuilds mlitb/static/engine/kernels.wasm (strict SIMD) and kernels-relaxed.wasm (relaxed SIMD's fused
# multiply-add) from kernels.c (Debian clang 14 + lld), and records the hashes the stale-binary test checks.
set -e
cd "$(dirname "$0")/.."
flags="--target=wasm32 -O3 -msimd128 -nostdlib -fno-builtin -Wl,--no-entry -Wl,--export=__heap_base -Wl,--strip-all"
clang $flags -o mlitb/static/engine/kernels.wasm mlitb/static/engine/kernels.c
clang $flags -DRELAXED -mrelaxed-simd -o mlitb/static/engine/kernels-relaxed.wasm mlitb/static/engine/kernels.c
python3 scripts/relaxed_opcodes.py mlitb/static/engine/kernels-relaxed.wasm
sha256sum scripts/build-wasm.sh scripts/relaxed_opcodes.py mlitb/static/engine/kernels.c mlitb/static/engine/kernels.wasm mlitb/static/engine/kernels-relaxed.wasm > mlitb/static/engine/kernels.wasm.sha256
