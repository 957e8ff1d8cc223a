// Layer-definition templates for the new-project form (ConvNetJS layer_defs).

export const TEMPLATES = {
  mnist: {
    label: "MNIST convnet (28×28×1, 10 classes)",
    shape: [28, 28, 1],
    layers: [
      { type: "input", out_sx: 28, out_sy: 28, out_depth: 1 },
      { type: "conv", sx: 5, filters: 8, stride: 1, pad: 2, activation: "relu" },
      { type: "pool", sx: 2, stride: 2 },
      { type: "conv", sx: 5, filters: 16, stride: 1, pad: 2, activation: "relu" },
      { type: "pool", sx: 3, stride: 3 },
      { type: "softmax", num_classes: 10 },
    ],
  },
  cifar: {
    label: "CIFAR-like convnet (32×32×3, 10 classes)",
    shape: [32, 32, 3],
    layers: [
      { type: "input", out_sx: 32, out_sy: 32, out_depth: 3 },
      { type: "conv", sx: 5, filters: 16, stride: 1, pad: 2, activation: "relu" },
      { type: "pool", sx: 2, stride: 2 },
      { type: "conv", sx: 5, filters: 20, stride: 1, pad: 2, activation: "relu" },
      { type: "pool", sx: 2, stride: 2 },
      { type: "conv", sx: 5, filters: 20, stride: 1, pad: 2, activation: "relu" },
      { type: "pool", sx: 2, stride: 2 },
      { type: "softmax", num_classes: 10 },
    ],
  },
};

// A template's layers fitted to a dataset's input shape [H, W, C] and class count.
export function fitTemplate(template, dataset) {
  const layers = structuredClone(template.layers);
  if (dataset?.shape) {
    const [h, w, c] = dataset.shape;
    Object.assign(layers[0], { out_sy: h, out_sx: w, out_depth: c });
  }
  if (dataset?.classes?.length) layers.at(-1).num_classes = dataset.classes.length;
  return layers;
}

// One layer per line: readable and still JSON.
export function layersToText(layers) {
  return `[\n${layers.map((l) => `  ${JSON.stringify(l)}`).join(",\n")}\n]`;
}
