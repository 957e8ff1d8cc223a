import { api, uploadDataset } from "../api.js";
import { TEMPLATES, fitLayers, fitProblem, fitTemplate, layersToText, suggestedName } from "../templates.js";
import { element, formatCount, showMessage } from "../format.js";

const $ = (id) => document.getElementById(id);
const form = $("project-form");
const layersField = $("layers");
const check = $("check");
let datasets = [];
let checkController = null;
let checkTimer = 0;
let layersValid = false;
let fitsDataset = true;
let autoName = ""; // the name this page suggested last; replaced on a new dataset unless the researcher typed one

for (const [key, template] of Object.entries(TEMPLATES)) $("template").append(element("option", { value: key, text: template.label }));

const datasetById = (id) => datasets.find((d) => d.id === id);

async function loadDatasets(select) {
  try {
    datasets = (await api.datasets()).datasets;
  } catch (error) {
    $("dataset").replaceChildren(element("option", { value: "", text: "data server unreachable" }));
    showMessage($("upload-message"), `Could not list datasets: ${error.message}`);
    return;
  }
  const options = datasets.map((d) => element("option", { value: d.id, text: `${d.name} · ${(d.shape || []).join("×")} · ${d.classes?.length ?? "?"} classes · ${formatCount(d.count ?? 0)} images` }));
  $("dataset").replaceChildren(element("option", { value: "", text: datasets.length ? "Choose a dataset" : "No datasets yet: upload one" }), ...options);
  if (select) $("dataset").value = select;
  else if (datasets.length === 1) $("dataset").value = datasets[0].id;
}

function useTemplate() {
  const template = TEMPLATES[$("template").value];
  const dataset = datasetById($("dataset").value);
  layersField.value = layersToText(fitTemplate(template, dataset));
  suggestName(dataset);
  scheduleCheck(0);
}

// A new dataset was chosen (or uploaded): the layers in the box, template or
// hand-written, take its image shape and class count, and the name follows it.
function refitToDataset() {
  const dataset = datasetById($("dataset").value);
  const { layers } = parseLayers();
  if (dataset && layers?.length) layersField.value = layersToText(fitLayers(layers, dataset));
  suggestName(dataset);
  scheduleCheck(0);
  updateCreate();
}

function suggestName(dataset) {
  const current = form.name.value.trim();
  if (current && current !== autoName) return; // the researcher's own name stays
  autoName = suggestedName(TEMPLATES[$("template").value], dataset);
  form.name.value = autoName;
}

function parseLayers() {
  try {
    const layers = JSON.parse(layersField.value);
    if (!Array.isArray(layers)) return { error: "layer definitions must be a JSON array of layers" };
    return { layers };
  } catch (error) {
    return { error: `not valid JSON: ${error.message}` };
  }
}

function scheduleCheck(delay = 300) {
  clearTimeout(checkTimer);
  checkTimer = setTimeout(runCheck, delay);
}

async function runCheck() {
  checkController?.abort();
  const { layers, error } = parseLayers();
  $("shapes").classList.add("hidden");
  layersValid = false;
  fitsDataset = true;
  updateCreate();
  if (error) {
    showMessage(check, error, "error");
    return;
  }
  checkController = new AbortController();
  try {
    const result = await api.checkLayers(layers, checkController.signal);
    const dataset = datasetById($("dataset").value);
    const mismatch = fitProblem(layers, dataset, result.layers?.at(-1)?.out_depth);
    layersValid = true;
    fitsDataset = !mismatch;
    showMessage(check, `${formatCount(result.param_count)} parameters.${mismatch ? ` The net does not fit the dataset: ${mismatch}. Choose the template again, or edit the layers.` : ""}`, mismatch ? "error" : "ok");
    check.dataset.fits = fitsDataset;
    check.dataset.paramCount = result.param_count;
    $("shapes").tBodies[0].replaceChildren(...(result.layers || []).map((l, i) => element("tr", {}, element("td", { text: i }), element("td", { text: l.type }), element("td", { text: `${l.out_sy}×${l.out_sx}×${l.out_depth}` }))));
    $("shapes").classList.remove("hidden");
  } catch (error) {
    if (error.name === "AbortError") return;
    showMessage(check, error.message, "error");
    Object.assign(check.dataset, { layer: error.body?.layer ?? "", field: error.body?.field ?? "" });
  }
  updateCreate();
}

function updateCreate() {
  const missing = [!form.name.value.trim() && "a name", !$("dataset").value && "a dataset", !layersValid && "valid layers",
    layersValid && !fitsDataset && "a net that fits the dataset"].filter(Boolean);
  $("create").disabled = missing.length > 0;
  $("create-hint").textContent = missing.length ? `Needs ${missing.join(", ")}.` : "";
}

function showOptimizerFields() {
  const name = form.optimizer.value;
  for (const label of form.querySelectorAll("label[data-for]")) label.classList.toggle("hidden", !label.dataset.for.split(" ").includes(name));
}

function optimizerSettings() {
  const name = form.optimizer.value;
  const number = (field) => Number(form[field].value);
  const optimizer = { name, learning_rate: number("learning_rate"), l1_decay: number("l1_decay"), l2_decay: number("l2_decay") };
  if (name === "sgd") optimizer.momentum = number("momentum");
  if (name === "adam") Object.assign(optimizer, { beta1: number("beta1"), beta2: number("beta2"), eps: number("eps") });
  if (name === "adagrad") optimizer.eps = number("eps");
  return optimizer;
}

async function create(event) {
  event.preventDefault();
  const message = $("create-message");
  showMessage(message, "");
  const { layers, error } = parseLayers();
  if (error) return showMessage(message, error);
  $("create").disabled = true;
  try {
    const project = await api.createProject({
      name: form.name.value.trim(),
      description: form.description.value.trim(),
      status: $("start-now").checked ? "running" : "paused",
      dataset: $("dataset").value,
      layers,
      iteration_ms: Number(form.iteration_ms.value),
      optimizer: optimizerSettings(),
    });
    showMessage(message, `Created ${project.name}.`, "ok");
    location.assign(`dashboard.html?project=${encodeURIComponent(project.id)}`);
  } catch (error) {
    showMessage(message, error.message);
    updateCreate();
  }
}

async function upload() {
  const file = $("upload-file").files[0];
  const message = $("upload-message");
  const bar = $("upload-progress");
  if (!file) return showMessage(message, "Choose a training zip first.");
  showMessage(message, `Uploading ${file.name}…`, "info");
  bar.style.width = "0%";
  $("upload").disabled = true;
  try {
    const manifest = await uploadDataset(file, {
      test: $("upload-test").files[0],
      options: { name: $("upload-name").value.trim(), size: $("upload-size").value.trim(), channels: $("upload-channels").value },
      onProgress: (fraction) => {
        bar.style.width = `${(fraction * 100).toFixed(1)}%`;
        if (fraction >= 1) showMessage(message, "Uploaded; the data server is decoding the images…", "info");
      },
    });
    bar.style.width = "100%";
    const dataset = manifest;
    showMessage(message, `Dataset ${dataset.name} is ready: ${formatCount(dataset.count ?? 0)} images in ${dataset.classes?.length ?? "?"} classes.`, "ok");
    await loadDatasets(dataset.id);
    if (layersField.value.trim()) refitToDataset();
    else useTemplate();
  } catch (error) {
    bar.style.width = "0%";
    showMessage(message, `Refused: ${error.message}`, "error");
  } finally {
    $("upload").disabled = false;
  }
}

function useTemplateIfEmpty() {
  if (!layersField.value.trim()) useTemplate();
  else scheduleCheck(0);
}

async function fromClosure() {
  const file = $("closure-file").files[0];
  const message = $("closure-message");
  if (!file) return showMessage(message, "Choose a closure file (.json) first.");
  try {
    const text = await file.text();
    JSON.parse(text);
    const project = await api.createFromClosure(text);
    showMessage(message, `Created ${project.name}.`, "ok");
    location.assign(`dashboard.html?project=${encodeURIComponent(project.id)}`);
  } catch (error) {
    showMessage(message, error instanceof SyntaxError ? `Not a JSON file: ${error.message}` : error.message);
  }
}

layersField.addEventListener("input", () => scheduleCheck());
form.name.addEventListener("input", updateCreate);
$("dataset").addEventListener("change", refitToDataset);
$("use-template").addEventListener("click", useTemplate);
form.optimizer.addEventListener("change", showOptimizerFields);
form.addEventListener("submit", create);
$("upload").addEventListener("click", upload);
$("from-closure").addEventListener("click", fromClosure);
showOptimizerFields();
updateCreate();
loadDatasets().then(useTemplateIfEmpty);
