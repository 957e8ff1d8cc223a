import { api, addExamples } from "../api.js";
import { modelFromClosure, imageToPixels, classify, renderBars, drawPixels, loadImage } from "../classify.js";
import { element, showMessage } from "../format.js";
import { onImageFile } from "../image-drop.js";
import { imageFiles, predictFiles } from "../predict-folder.js";

const $ = (id) => document.getElementById(id);
let model = null;
let source = null;
let stream = null;
let projects = [];
let liveDataset = null; // the dataset of the live project whose model is loaded; null for a closure file
let sourceBlob = null; // the image as uploaded (file) or taken (camera PNG), to add to the dataset

async function listProjects() {
  try {
    projects = await api.projects();
    const wanted = new URLSearchParams(location.search).get("project");
    $("project").replaceChildren(
      element("option", { value: "", text: projects.length ? "choose a project" : "no projects" }),
      ...projects.map((p) => element("option", { value: p.id, text: `${p.name} (iteration ${p.iteration})`, selected: p.id === wanted })));
    if (wanted && projects.some((p) => p.id === wanted)) loadLive();
  } catch (error) {
    showMessage($("model-message"), `Could not list projects: ${error.message}`);
  }
}

async function useClosure(closure, origin) {
  model = await modelFromClosure(closure);
  const [h, w, c] = model.shape;
  showMessage($("model-message"), `Loaded ${model.name} from ${origin}: ${model.net.paramCount.toLocaleString("en")} parameters, input ${h}×${w}×${c}, ${model.classes.length} classes.`, "ok");
  $("model-message").dataset.loaded = "true";
  predict();
}

async function loadLive() {
  const id = $("project").value;
  if (!id) return;
  showMessage($("model-message"), "Loading the live model…", "info");
  try {
    const closure = await api.closure(id);
    liveDataset = projects.find((p) => p.id === id)?.dataset ?? null;
    await useClosure(closure, "the live project");
  } catch (error) {
    showMessage($("model-message"), error.message);
  }
}

async function loadClosureFile() {
  const file = $("closure-file").files[0];
  if (!file) return;
  try {
    liveDataset = null;
    await useClosure(JSON.parse(await file.text()), file.name);
  } catch (error) {
    showMessage($("model-message"), `${file.name}: ${error.message}`);
  }
}

async function useImageFile(file) {
  if (!file) return;
  try {
    const image = await loadImage(file);
    $("picture").src = image.src;
    $("picture").classList.remove("hidden");
    source = image;
    source.title = file.name;
    sourceBlob = file;
    showMessage($("image-message"), "");
    predict();
  } catch (error) {
    showMessage($("image-message"), error.message);
  }
}

function predict() {
  if (!model || !source) return;
  const pixels = imageToPixels(source, model.shape, { invert: $("invert").value });
  drawPixels($("input-view"), pixels, model.shape);
  const ranked = classify(model, pixels);
  renderBars($("bars"), ranked);
  $("bars").dataset.image = source.title || "camera";
  offerToAdd(ranked[0].label);
}

// MLitB's take-a-picture: the image, with the label the researcher picks, joins the
// live project's training data (the master allocates the new shard within an iteration or two).
function offerToAdd(predicted) {
  const show = Boolean(liveDataset && sourceBlob);
  $("add-data").classList.toggle("hidden", !show);
  if (!show) return;
  $("add-label").replaceChildren(...model.classes.map((label) => element("option", { value: label, text: label, selected: label === predicted })));
  showMessage($("add-message"), "");
}

async function addToData() {
  const message = $("add-message");
  const label = $("add-label").value;
  $("add").disabled = true;
  try {
    const manifest = await addExamples(liveDataset, { image: sourceBlob, label });
    const train = manifest.splits.train;
    showMessage(message, `Added as ${label}: ${manifest.name} now has ${train.count.toLocaleString("en")} training examples (revision ${manifest.revision}).`, "ok");
    message.dataset.trainCount = String(train.count);
  } catch (error) {
    showMessage(message, `Not added: ${error.message}`);
  } finally {
    $("add").disabled = false;
  }
}

async function toggleCamera() {
  if (stream) {
    stream.getTracks().forEach((t) => t.stop());
    stream = null;
    $("video").classList.add("hidden");
    $("snap").classList.add("hidden");
    $("camera").textContent = "Use the camera";
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
    $("video").srcObject = stream;
    $("video").classList.remove("hidden");
    $("snap").classList.remove("hidden");
    $("camera").textContent = "Stop the camera";
  } catch (error) {
    showMessage($("image-message"), `No camera: ${error.message}`);
  }
}

function snap() {
  const video = $("video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  source = canvas;
  source.title = "camera";
  sourceBlob = null;
  canvas.toBlob((blob) => {
    sourceBlob = blob;
    predict();
  }, "image/png");
  $("picture").src = canvas.toDataURL("image/png");
  $("picture").classList.remove("hidden");
  predict();
}

// A folder through the master's prediction endpoint: the live project's workers compute.
async function predictFolder() {
  const id = $("project").value;
  const message = $("folder-message");
  const files = imageFiles($("folder").files);
  if (!id) return showMessage(message, "Choose a live project first (a closure file predicts one image at a time here).");
  if (!files.length) return showMessage(message, "No image files in that folder.");
  const progress = $("folder-progress");
  progress.classList.remove("hidden");
  progress.max = files.length;
  progress.value = 0;
  showMessage(message, `Predicting ${files.length} images…`, "info");
  try {
    const { predictions, chunks } = await predictFiles(id, files, { onProgress: (done) => (progress.value = done) });
    const body = $("folder-results").querySelector("tbody");
    body.replaceChildren(...predictions.map((p) => element("tr", { "data-label": p.label },
      element("td", { text: p.path }), element("td", { text: p.class }),
      element("td", { text: p.probabilities[p.label].toFixed(4) }))));
    $("folder-results").classList.remove("hidden");
    const workers = new Set(chunks.map((c) => c.worker)).size;
    showMessage(message, `${predictions.length} images predicted in ${chunks.length} chunks by ${workers} worker${workers === 1 ? "" : "s"}.`, "ok");
    message.dataset.done = String(predictions.length);
  } catch (error) {
    showMessage(message, `Not predicted: ${error.message}`);
  }
}

onImageFile({ input: $("image-file"), dropzone: $("dropzone") }, useImageFile);
$("folder").addEventListener("change", predictFolder);
$("load-live").addEventListener("click", loadLive);
$("closure-file").addEventListener("change", loadClosureFile);
$("invert").addEventListener("change", predict);
$("camera").addEventListener("click", toggleCamera);
$("snap").addEventListener("click", snap);
$("add").addEventListener("click", addToData);
if (!navigator.mediaDevices?.getUserMedia) $("camera").classList.add("hidden");
listProjects();
