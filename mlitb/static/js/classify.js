// Classifying images with a research closure: the model from the closure JSON,
// an image turned into the model's input pixels, the top classes as bars.
// Used by the predict page and the standalone closure page.

import { createNet } from "../engine/net.js";

export class ClosureError extends Error {}

function base64ToBytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// The closure's float arrays: base64 of little-endian float32 bytes (docs/closure.md).
export function decodeFloats(text) {
  if (typeof text !== "string") throw new ClosureError("model.params must be base64 of float32 bytes");
  const bytes = base64ToBytes(text);
  if (bytes.length % 4) throw new ClosureError("model.params is not a whole number of float32 values");
  return new Float32Array(bytes.buffer, 0, bytes.length >> 2);
}

export async function modelFromClosure(closure, { simd = true } = {}) {
  if (!closure || typeof closure !== "object" || closure.format !== "mlitb-closure") throw new ClosureError("this is not an mlitb research closure (format must be \"mlitb-closure\")");
  const layers = closure.model?.layers;
  if (!Array.isArray(layers)) throw new ClosureError("the closure has no model.layers");
  const net = await createNet(layers, { simd });
  const params = decodeFloats(closure.model.params);
  if (params.length !== net.paramCount) throw new ClosureError(`the closure has ${params.length} parameters, its layers need ${net.paramCount}`);
  const classes = Array.isArray(closure.classes) ? closure.classes.map(String) : Array.from({ length: net.numClasses }, (_, i) => String(i));
  const normalization = closure.normalization || { scale: 1 / 255, offset: 0 };
  return { net, params, classes, normalization, shape: net.inputShape, name: closure.name || "mlitb model" };
}

// The drawable (image, video frame, canvas) as uint8 pixels of shape [H, W, C]:
// centre-cropped to the input's aspect ratio and resized. Greyscale models get
// light-on-dark pixels when `invert` is "auto" and the picture is dark-on-light.
export function imageToPixels(source, [h, w, c], { invert = "auto" } = {}) {
  const sw = source.videoWidth || source.naturalWidth || source.width;
  const sh = source.videoHeight || source.naturalHeight || source.height;
  const scale = Math.min(sw / w, sh / h);
  const cw = w * scale, ch = h * scale;
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.imageSmoothingQuality = "high";
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, w, h);
  ctx.drawImage(source, (sw - cw) / 2, (sh - ch) / 2, cw, ch, 0, 0, w, h);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const pixels = new Uint8Array(h * w * c);
  for (let i = 0; i < h * w; i++) {
    const r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
    if (c === 1) pixels[i] = Math.round(0.299 * r + 0.587 * g + 0.114 * b);
    else for (let k = 0; k < c; k++) pixels[c * i + k] = [r, g, b][k % 3];
  }
  const flip = invert === "yes" || (invert === "auto" && c === 1 && borderMean(pixels, h, w) > 127);
  if (flip) for (let i = 0; i < pixels.length; i++) pixels[i] = 255 - pixels[i];
  return pixels;
}

function borderMean(pixels, h, w) {
  let sum = 0, n = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (y === 0 || x === 0 || y === h - 1 || x === w - 1) {
        sum += pixels[y * w + x];
        n++;
      }
    }
  }
  return sum / n;
}

// Classes with their probabilities, most likely first.
export function classify(model, pixels) {
  const { scale = 1 / 255, offset = 0 } = model.normalization;
  const x = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) x[i] = pixels[i] * scale + offset;
  const probs = model.net.predict(model.params, x, 1);
  return Array.from(probs, (p, i) => ({ label: model.classes[i] ?? String(i), p })).sort((a, b) => b.p - a.p);
}

export function renderBars(container, ranked, k = 5) {
  container.replaceChildren(
    ...ranked.slice(0, k).map(({ label, p }) => {
      const row = document.createElement("div");
      row.className = "bar";
      row.dataset.label = label;
      row.dataset.p = String(p);
      const name = document.createElement("span");
      name.className = "label";
      name.textContent = label;
      const track = document.createElement("div");
      track.className = "track";
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = `${(p * 100).toFixed(1)}%`;
      track.append(fill);
      const value = document.createElement("span");
      value.className = "p";
      value.textContent = `${(p * 100).toFixed(1)}%`;
      row.append(name, track, value);
      return row;
    }),
  );
}

// What the model sees, drawn at its own resolution (CSS scales it up).
export function drawPixels(canvas, pixels, [h, w, c]) {
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < 3; k++) image.data[4 * i + k] = c === 1 ? pixels[i] : pixels[c * i + k];
    image.data[4 * i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

// An <img> of the file; its blob URL lives until the next call (pages show the image).
let lastUrl = null;
export function loadImage(file) {
  if (lastUrl) URL.revokeObjectURL(lastUrl);
  return new Promise((resolve, reject) => {
    const url = (lastUrl = URL.createObjectURL(file));
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`${file.name} is not an image this browser can read`));
    image.src = url;
  });
}
