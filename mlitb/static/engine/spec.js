// ConvNetJS layer_defs: validation and expansion (activation, drop_prob and
// softmax's fc become their own layers), every shape resolved.

export const ACTIVATIONS = ["relu", "tanh", "sigmoid"];
export const LAYER_TYPES = ["input", "conv", "pool", "fc", "relu", "tanh", "sigmoid", "dropout", "softmax"];

const ALLOWED_FIELDS = {
  input: ["out_sx", "out_sy", "out_depth"],
  conv: ["sx", "sy", "filters", "stride", "pad", "activation", "drop_prob", "bias_pref", "l1_decay_mul", "l2_decay_mul"],
  pool: ["sx", "sy", "stride", "pad"],
  fc: ["num_neurons", "activation", "drop_prob", "bias_pref", "l1_decay_mul", "l2_decay_mul"],
  relu: [],
  tanh: [],
  sigmoid: [],
  dropout: ["drop_prob"],
  softmax: ["num_classes"],
};

export class SpecError extends Error {
  constructor(index, field, message, layerType) {
    const where = index == null ? "layers" : `layer ${index}` + (layerType ? ` (${layerType})` : "");
    super(field ? `${where}: '${field}' ${message}` : `${where}: ${message}`);
    this.name = "SpecError";
    this.index = index;
    this.field = field;
  }
}

const show = (v) => (typeof v === "string" ? `'${v}'` : v === undefined ? "None" : JSON.stringify(v));

function positiveInt(d, i, field, fallback) {
  const v = field in d ? d[field] : fallback;
  if (v === undefined) throw new SpecError(i, field, "is required: a positive integer", d.type);
  if (!Number.isInteger(v) || v < 1) throw new SpecError(i, field, `must be a positive integer, got ${show(v)}`, d.type);
  return v;
}

function nonNegativeInt(d, i, field) {
  const v = field in d ? d[field] : 0;
  if (!Number.isInteger(v) || v < 0) throw new SpecError(i, field, `must be a non-negative integer, got ${show(v)}`, d.type);
  return v;
}

function finiteNumber(d, i, field, fallback) {
  const v = field in d ? d[field] : fallback;
  if (typeof v !== "number" || !Number.isFinite(v)) throw new SpecError(i, field, `must be a finite number, got ${show(v)}`, d.type);
  return v;
}

function dropProb(d, i) {
  const p = finiteNumber(d, i, "drop_prob", 0.5);
  if (!(p >= 0 && p < 1)) throw new SpecError(i, "drop_prob", `must be in [0, 1), got ${p}`, d.type);
  return p;
}

function windowOut(d, i, field, size, window, stride, pad) {
  const out = Math.floor((size + 2 * pad - window) / stride) + 1;
  if (out < 1) throw new SpecError(i, field, `window ${window} with pad ${pad} does not fit an input of size ${size}`, d.type);
  return out;
}

function windowed(d, i, [inSy, inSx], defaultStride) {
  const sx = positiveInt(d, i, "sx");
  const sy = positiveInt(d, i, "sy", sx);
  const stride = positiveInt(d, i, "stride", defaultStride);
  const pad = nonNegativeInt(d, i, "pad");
  const outSy = windowOut(d, i, "sy", inSy, sy, stride, pad);
  const outSx = windowOut(d, i, "sx", inSx, sx, stride, pad);
  return { sx, sy, stride, pad, outSy, outSx };
}

function checkFields(d, i) {
  if (d === null || typeof d !== "object" || Array.isArray(d)) {
    throw new SpecError(i, null, `must be an object with a 'type', got ${Array.isArray(d) ? "list" : d === null ? "null" : typeof d}`);
  }
  const kind = d.type;
  if (!LAYER_TYPES.includes(kind)) throw new SpecError(i, "type", `must be one of ${LAYER_TYPES.join(", ")}, got ${show(kind)}`);
  const allowed = ALLOWED_FIELDS[kind];
  for (const field of Object.keys(d)) {
    if (field !== "type" && !allowed.includes(field)) {
      const choices = allowed.length ? allowed.join(", ") : "no other fields";
      throw new SpecError(i, field, `is not a field of a ${kind} layer (allowed: ${choices})`, kind);
    }
  }
  if ("activation" in d && !ACTIVATIONS.includes(d.activation)) {
    throw new SpecError(i, "activation", `must be one of ${ACTIVATIONS.join(", ")}, got ${show(d.activation)}`, kind);
  }
  return kind;
}

function layer(type, index, inShape, outShape, extra = {}) {
  return { type, index, inShape, outShape, inSize: inShape[0] * inShape[1] * inShape[2], outSize: outShape[0] * outShape[1] * outShape[2], ...extra };
}

// Expanded layers; shapes are [sy, sx, depth]; `index` is the user's definition it came from.
export function expand(layerDefs) {
  if (!Array.isArray(layerDefs) || layerDefs.length < 2) {
    throw new SpecError(null, null, "must be a list of at least an input and a softmax layer definition");
  }
  const layers = [];
  let shape = [0, 0, 0];
  const last = layerDefs.length - 1;
  layerDefs.forEach((d, i) => {
    const kind = checkFields(d, i);
    if ((kind === "input") !== (i === 0)) throw new SpecError(i, "type", "must be 'input' for the first layer only", kind);
    if ((kind === "softmax") !== (i === last)) throw new SpecError(i, "type", "must be 'softmax' for the last layer only", kind);
    if (kind === "input") {
      shape = [positiveInt(d, i, "out_sy"), positiveInt(d, i, "out_sx"), positiveInt(d, i, "out_depth")];
      layers.push(layer("input", i, shape, shape));
    } else if (kind === "conv" || kind === "fc") {
      const common = {
        biasPref: finiteNumber(d, i, "bias_pref", d.activation === "relu" ? 0.1 : 0),
        l1DecayMul: finiteNumber(d, i, "l1_decay_mul", 0),
        l2DecayMul: finiteNumber(d, i, "l2_decay_mul", 1),
      };
      let out;
      if (kind === "conv") {
        const filters = positiveInt(d, i, "filters");
        const { sx, sy, stride, pad, outSy, outSx } = windowed(d, i, shape, 1);
        out = [outSy, outSx, filters];
        layers.push(layer("conv", i, shape, out, { sx, sy, stride, pad, ...common }));
      } else {
        out = [1, 1, positiveInt(d, i, "num_neurons")];
        layers.push(layer("fc", i, shape, out, common));
      }
      shape = out;
      if ("activation" in d) layers.push(layer(d.activation, i, shape, shape));
      if ("drop_prob" in d) layers.push(layer("dropout", i, shape, shape, { dropProb: dropProb(d, i) }));
    } else if (kind === "pool") {
      const { sx, sy, stride, pad, outSy, outSx } = windowed(d, i, shape, 2);
      if (pad >= sx || pad >= sy) {
        throw new SpecError(i, "pad", `must be smaller than the window (${sx}x${sy}) so every window sees the input, got ${pad}`, kind);
      }
      const out = [outSy, outSx, shape[2]];
      layers.push(layer("pool", i, shape, out, { sx, sy, stride, pad }));
      shape = out;
    } else if (kind === "dropout") {
      layers.push(layer("dropout", i, shape, shape, { dropProb: dropProb(d, i) }));
    } else if (ACTIVATIONS.includes(kind)) {
      layers.push(layer(kind, i, shape, shape));
    } else {
      const classes = d.num_classes;
      if (!Number.isInteger(classes) || classes < 2) {
        throw new SpecError(i, "num_classes", `must be an integer of at least 2, got ${show(classes)}`, kind);
      }
      const out = [1, 1, classes];
      layers.push(layer("fc", i, shape, out, { biasPref: 0, l1DecayMul: 0, l2DecayMul: 1 }));
      layers.push(layer("softmax", i, out, out));
    }
  });
  return layers;
}
