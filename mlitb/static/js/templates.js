// Layer-definition templates for the new-project form (ConvNetJS layer_defs).

export const TEMPLATES = {
  mnist: {
    label: "MNIST convnet (28×28×1, 10 classes)",
    kind: "convnet",
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
    kind: "convnet",
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

// A template's layers fitted to a dataset ({shape: [H, W, C], classes}): see fitLayers.
export function fitTemplate(template, dataset) {
  return fitLayers(template.layers, dataset);
}

// Windowed layers' output size along one axis (ConvNetJS: floor((in + 2 pad - window) / stride) + 1).
const windowOut = (size, window, stride, pad) => Math.floor((size + 2 * pad - window) / stride) + 1;
const SHAPE_KEEPING = new Set(["input", "relu", "tanh", "sigmoid", "dropout", "maxout"]);

// A copy of `layers` re-fitted to a dataset: the input layer takes the images'
// height, width and channels, the last softmax the number of classes, and a
// pool layer whose window no longer fits the (smaller) images is dropped, so a
// template made for 28×28 digits still builds for 8×8 icons.
export function fitLayers(layers, dataset) {
  const fitted = structuredClone(layers);
  if (!dataset) return fitted;
  if (dataset.shape && fitted[0]?.type === "input") {
    const [h, w, c] = dataset.shape;
    Object.assign(fitted[0], { out_sy: h, out_sx: w, out_depth: c });
  }
  const last = fitted.at(-1);
  if (dataset.classes?.length && last?.type === "softmax") last.num_classes = dataset.classes.length;
  if (!dataset.shape) return fitted;
  let [sy, sx] = dataset.shape;
  const kept = [];
  for (const layer of fitted) {
    if (layer.type === "conv" || layer.type === "pool") {
      const wx = layer.sx ?? 1, wy = layer.sy ?? wx;
      const stride = layer.stride ?? (layer.type === "pool" ? 2 : 1), pad = layer.pad ?? 0;
      const outY = windowOut(sy, wy, stride, pad), outX = windowOut(sx, wx, stride, pad);
      if (outY >= 1 && outX >= 1) [sy, sx] = [outY, outX];
      else if (layer.type === "pool") continue; // the images are already this small
    } else if (!SHAPE_KEEPING.has(layer.type)) {
      [sy, sx] = [1, 1];
    }
    kept.push(layer);
  }
  return kept;
}

// Why `layers` cannot train on `dataset`, in words; "" when they fit.
// `outDepth` is the last layer's output depth from the master's layer check.
export function fitProblem(layers, dataset, outDepth) {
  if (!dataset?.shape) return "";
  const input = layers[0] || {};
  const [h, w, c] = dataset.shape;
  if (input.out_sy !== h || input.out_sx !== w || input.out_depth !== c) {
    return `the dataset's images are ${h}×${w}×${c} but the input layer is ${input.out_sy}×${input.out_sx}×${input.out_depth}`;
  }
  const classes = dataset.classes?.length;
  if (classes && outDepth !== undefined && outDepth !== classes) return `the dataset has ${classes} classes but the model outputs ${outDepth}`;
  return "";
}

// A name for a project made from `template` on `dataset`: "pets convnet".
export function suggestedName(template, dataset) {
  return dataset ? `${dataset.name} ${template?.kind ?? "net"}` : "";
}

// One layer per line: readable and still JSON.
export function layersToText(layers) {
  return `[\n${layers.map((l) => `  ${JSON.stringify(l)}`).join(",\n")}\n]`;
}
