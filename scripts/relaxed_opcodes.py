"""Renumber clang 14's prototype relaxed-SIMD opcodes to the final ones, in place.

Debian 12's clang 14 emits f32x4.relaxed_madd under its prototype encoding
(0xfd 0xaf 0x01, "f32x4.fma"); browsers accept only the final one (0xfd 0x85
0x02, opcode 0x105). Both are three bytes, so the code section keeps its size.
Only the code section is touched, and only whole instructions: every other
SIMD opcode in it would be left alone, so the script refuses a module whose
count of patched sites is zero (nothing relaxed was built).

    python3 scripts/relaxed_opcodes.py mlitb/static/engine/kernels-relaxed.wasm
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTOTYPE = bytes([0xFD, 0xAF, 0x01])  # f32x4.fma (prototype) -> f32x4.relaxed_madd
FINAL = bytes([0xFD, 0x85, 0x02])
CODE_SECTION = 10


def leb(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def patch(data: bytearray) -> int:
    at, count = 8, 0
    while at < len(data):
        section = data[at]
        size, body = leb(data, at + 1)
        if section == CODE_SECTION:
            end = body + size
            i = data.find(PROTOTYPE, body, end)
            while i >= 0:
                data[i:i + 3] = FINAL
                count += 1
                i = data.find(PROTOTYPE, i + 3, end)
        at = body + size
    return count


def main() -> None:
    path = Path(sys.argv[1])
    data = bytearray(path.read_bytes())
    count = patch(data)
    if not count:
        sys.exit(f"{path}: no prototype relaxed-SIMD opcodes found; was it built with -DRELAXED -mrelaxed-simd?")
    path.write_bytes(bytes(data))
    print(f"{path}: {count} f32x4.relaxed_madd")


if __name__ == "__main__":
    main()
