#!/bin/sh
# Rebuilds mlitb/static/engine/kernels.wasm from kernels.c (Debian clang + lld) and records the hashes the stale-binary test checks.
cd "$(dirname "$0")/.." && clang --target=wasm32 -O3 -msimd128 -nostdlib -fno-builtin -Wl,--no-entry -Wl,--export=__heap_base -Wl,--strip-all -o mlitb/static/engine/kernels.wasm mlitb/static/engine/kernels.c && sha256sum scripts/build-wasm.sh mlitb/static/engine/kernels.c mlitb/static/engine/kernels.wasm > mlitb/static/engine/kernels.wasm.sha256
