// The standalone closure page: the research closure is embedded in the page
// (script#closure); everything runs here, with no server.

import { modelFromClosure, imageToPixels, classify, renderBars, drawPixels, loadImage } from "./classify.js";
import { onImageFile } from "./image-drop.js";

const $ = (id) => document.getElementById(id);
const closureText = $("closure").textContent;
let model = null;
let source = null;

function say(text, kind = "info") {
  $("message").textContent = text;
  $("message").className = `message ${kind}`;
}

function predict() {
  if (!model || !source) return;
  const pixels = imageToPixels(source, model.shape, { invert: $("invert").value });
  drawPixels($("input-view"), pixels, model.shape);
  renderBars($("bars"), classify(model, pixels));
  $("bars").dataset.image = source.title;
}

async function useFile(file) {
  if (!file) return;
  try {
    source = await loadImage(file);
    source.title = file.name;
    $("picture").src = source.src;
    $("picture").classList.remove("hidden");
    predict();
  } catch (error) {
    say(error.message, "error");
  }
}

async function main() {
  try {
    const closure = JSON.parse(closureText);
    model = await modelFromClosure(closure, { simd: false });
    const [h, w, c] = model.shape;
    $("title").textContent = model.name;
    document.title = `${model.name} · mlitb closure`;
    say(`Ready: ${model.net.paramCount.toLocaleString("en")} parameters, input ${h}×${w}×${c}, classes ${model.classes.join(", ")}. Nothing leaves this page.`, "ok");
    $("message").dataset.ready = "true";
    const blob = new Blob([closureText], { type: "application/json" });
    $("download").href = URL.createObjectURL(blob);
    $("download").download = `${model.name.replace(/[^\w.-]+/g, "-")}.closure.json`;
    predict();
  } catch (error) {
    say(`This closure cannot run here: ${error.message}`, "error");
  }
}

onImageFile({ input: $("image-file"), dropzone: $("dropzone") }, useFile);
$("invert").addEventListener("change", predict);
main();
