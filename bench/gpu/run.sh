#!/usr/bin/env bash
# The GPU table on a machine with an NVIDIA GPU and PyTorch, but no node and no
# Vulkan loader: both come in .gpu/ (see bench/README.md, "WebGPU on a GPU").
# Writes engines.json, torch.json, parity.json and table.txt to ${OUT:-/tmp/gpu-bench}.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/gpu-bench}; mkdir -p "$out"
seconds=${SECONDS_PER_ROW:-2}
tools=$(mktemp -d)
cp .gpu/node.xz .gpu/dawn.node.xz "$tools/" && (cd "$tools" && xz -d node.xz dawn.node.xz && chmod +x node)
for f in .gpu/*.deb; do dpkg -x "$f" /; done; ldconfig
export LD_LIBRARY_PATH=/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}
export VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
export DAWN=$tools/dawn.node
"$tools/node" tests/js/webgpu_child.mjs > "$out/parity.json" 2> "$out/parity.err" || true
"$tools/node" bench/gpu/engines.mjs "$seconds" > "$out/engines.json" 2> "$out/engines.err"
python3 bench/gpu/torch_cuda.py "$seconds" > "$out/torch.json" 2> "$out/torch.err"
python3 bench/gpu/table.py "$out/engines.json" "$out/torch.json" "$out/parity.json" | tee "$out/table.txt"
