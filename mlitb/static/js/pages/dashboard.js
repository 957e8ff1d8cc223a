import { addExamples, api, ApiError } from "../api.js";
import { Boss } from "../boss.js";
import { LineChart } from "../chart.js";
import { mountResearchPanel } from "../research-panel.js";
import { element, formatCount, formatMs, formatPercent, formatRate, showMessage, datasetName } from "../format.js";
import { metricsCsv, downloadText } from "../metrics-csv.js";
import { copyField, shareLink, workerCommand } from "../share.js";

const $ = (id) => document.getElementById(id);
const projectId = new URLSearchParams(location.search).get("project");
const message = $("message");
let project = null;
let metrics = [];
let lastIteration = -1;
let trackerEvals = [];
let tracker = null;
let targetT = [];
let formFilled = false;
let aboutFilled = false;
let pollTimer = 0;
let polling = null;
const research = projectId ? mountResearchPanel($("research"), projectId) : null;

const charts = {
  loss: new LineChart($("chart-loss"), { title: "Loss", xLabel: "iteration", yLabel: "cross-entropy", series: [{ name: "training loss" }, { name: "test loss", dashed: true }] }),
  accuracy: new LineChart($("chart-accuracy"), { title: "Accuracy", xLabel: "iteration", yLabel: "accuracy", yMin: 0, yMax: 1, series: [{ name: "test (master)", color: "#16a34a" }, { name: "training", color: "#2563eb" }, { name: "test (this browser)", color: "#9333ea", dashed: true }] }),
  duration: new LineChart($("chart-duration"), { title: "Iteration duration vs T", xLabel: "iteration", yLabel: "ms", series: [{ name: "iteration duration", color: "#ea580c" }, { name: "T", color: "#475569", dashed: true }] }),
  rate: new LineChart($("chart-rate"), { title: "Throughput", xLabel: "iteration", yLabel: "examples / s", series: [{ name: "examples/s", color: "#0891b2" }] }),
};

async function showChooser() {
  $("chooser").classList.remove("hidden");
  const projects = await api.projects();
  const body = $("project-table").tBodies[0];
  body.replaceChildren(
    ...projects.map((p) =>
      element("tr", {},
        element("td", {}, element("a", { href: `dashboard.html?project=${encodeURIComponent(p.id)}`, text: p.name || p.id })),
        element("td", {}, element("span", { class: `badge ${p.status}`, text: p.status })),
        element("td", { text: datasetName(p.dataset) }),
        element("td", { class: "num", text: formatCount(p.iteration ?? 0) }),
        element("td", { class: "num", text: formatCount(Array.isArray(p.workers) ? p.workers.length : p.workers ?? 0) }),
        element("td", { class: "num", text: formatPercent(p.metrics?.test_accuracy ?? p.test_accuracy) }))));
  if (!projects.length) body.append(element("tr", {}, element("td", { colspan: 6, class: "muted", text: "No projects yet." })));
}

function poll() {
  polling ??= refresh().finally(() => (polling = null));
  return polling;
}

async function refresh() {
  try {
    // Evaluations land in their iteration's record after it was first served: re-read a trailing window.
    const trailing = Math.max(20, 3 * (project?.eval_every || 10));
    const since = Math.max(0, lastIteration - trailing + 1);
    const [fresh, newMetrics, credit] = await Promise.all([api.project(projectId), api.metrics(projectId, since), api.credit(projectId)]);
    drawContributors(credit);
    project = fresh;
    metrics = metrics.filter((m) => m.iteration < since).concat(newMetrics);
    if (metrics.length) lastIteration = metrics.at(-1).iteration;
    const now = Date.now() / 1000;
    if (!targetT.length || targetT.at(-1)[1] !== project.iteration_ms) targetT.push([lastIteration, project.iteration_ms, now]);
    render();
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      clearInterval(pollTimer);
      pollTimer = 0;
      $("project").classList.add("hidden");
      await showChooser();
      showMessage($("chooser-message"), `There is no project ${projectId} (any more). These are the projects:`);
    }
  }
}

function seriesX(m, t0) {
  return $("x-axis").value === "time" ? m.time - t0 : m.iteration;
}

function render() {
  $("project").classList.remove("hidden");
  document.title = `mlitb · ${project.name}`;
  $("name").textContent = project.name || project.id;
  $("status").textContent = project.status;
  $("status").className = `badge ${project.status}`;
  $("start").classList.toggle("hidden", project.status === "running");
  $("pause").classList.toggle("hidden", project.status !== "running");
  $("summary").textContent = [`dataset ${datasetName(project.dataset)}`, `${formatCount(project.param_count)} parameters`, `T = ${formatMs(project.iteration_ms)}`, project.optimizer?.name].filter(Boolean).join(" · ");
  if (project.error) $("summary").textContent += ` · error at ${new Date(project.error.time * 1000).toLocaleTimeString()}: ${project.error.message}`;
  const latest = project.metrics || project.latest_metrics || metrics.at(-1) || {};
  const lastTest = [...metrics].reverse().find((m) => m.test_accuracy != null);
  $("f-iteration").textContent = formatCount(project.iteration ?? 0);
  $("f-iteration").dataset.value = project.iteration ?? 0;
  $("f-loss").textContent = latest.train_loss != null ? latest.train_loss.toFixed(3) : "–";
  const accuracy = lastTest?.test_accuracy ?? latest.test_accuracy;
  $("f-accuracy").textContent = formatPercent(accuracy);
  if (accuracy != null) $("f-accuracy").dataset.value = accuracy;
  $("f-rate").textContent = formatRate(latest.examples_per_s ?? 0);
  $("f-workers").textContent = formatCount((project.workers || []).filter((w) => w.role !== "tracker").length);
  fillForm();
  showAbout();
  research?.update(project);
  drawCharts();
  drawWorkers();
}

function drawCharts() {
  const xLabel = $("x-axis").value === "time" ? "time (s)" : "iteration";
  charts.loss.setXLabel(xLabel);
  charts.accuracy.setXLabel(xLabel);
  const t0 = metrics[0]?.time ?? 0;
  const pick = (field) => metrics.filter((m) => m[field] != null).map((m) => [seriesX(m, t0), m[field]]);
  charts.loss.setData([pick("train_loss"), pick("test_loss")]);
  const browser = trackerEvals.map((e) => [$("x-axis").value === "time" ? e.time - t0 : e.iteration, e.accuracy]);
  charts.accuracy.setData([pick("test_accuracy"), pick("train_accuracy"), browser]);
  const durations = metrics.filter((m) => m.iteration_ms != null).map((m) => [m.iteration, m.iteration_ms]);
  const targets = [];
  if (metrics.length) {
    targetT.forEach(([from, t], i) => {
      const start = i === 0 ? metrics[0].iteration : from;
      const end = i + 1 < targetT.length ? targetT[i + 1][0] : metrics.at(-1).iteration;
      targets.push([start, t], [end, t]);
    });
  }
  charts.duration.setData([durations, targets]);
  charts.rate.setData([metrics.filter((m) => m.examples_per_s != null).map((m) => [m.iteration, m.examples_per_s])]);
}

// The engine, its GPU and calibrated speed on hover; a CPU engine that fell back to plain JS is a warning.
function engineCell(w) {
  const fallback = (w.engine ?? "").startsWith("js-fallback");
  const title = [w.adapter, w.calibrated_examples_per_s ? `${formatRate(w.calibrated_examples_per_s)} examples/s calibrated` : "",
    fallback ? "kernels.wasm did not load on this worker: it trains about 9× slower; check the deployment" : ""].filter(Boolean).join(" · ");
  return element("td", { text: `${fallback ? "⚠ " : ""}${w.engine ?? "–"}`, title, style: fallback ? "color: var(--warn); font-weight: 600" : undefined, "data-engine": w.engine ?? "" });
}

function drawWorkers() {
  const workers = project.workers || [];
  $("workers").tBodies[0].replaceChildren(
    ...workers.map((w) =>
      element("tr", { "data-kind": w.kind || "" },
        element("td", { text: w.id }),
        element("td", { text: w.kind ?? "–" }),
        engineCell(w),
        element("td", { text: w.role ?? "trainer" }),
        element("td", {}, element("span", { class: `badge ${w.state}`, text: w.state ?? "–" })),
        element("td", { class: "num", text: formatMs(w.latency_ms) }),
        element("td", { class: "num", text: formatMs(w.budget_ms) }),
        element("td", { class: "num", text: `${formatCount(w.shards_allocated)} (${formatCount(w.shards_cached)})` }),
        element("td", { class: "num", text: formatRate(w.examples_per_s) }),
        element("td", { class: "num", text: formatCount(w.accepted) }),
        element("td", { class: "num", text: formatCount(w.dropped) }),
        element("td", { class: "trust", text: trustText(w.trust), title: trustTitle(w.trust) }),
        element("td", {}, banButton(w)))));
  if (!workers.length) $("workers").tBodies[0].append(element("tr", {}, element("td", { colspan: 13, class: "muted", text: `No workers connected. Share the volunteer link, or run: ${$("worker-command").value}` })));
}

function drawContributors(credit) {
  const rows = (credit?.top || []).map((c) =>
    element("tr", {},
      element("td", { text: c.volunteer }),
      element("td", { text: c.name || "–" }),
      element("td", { class: "num", text: formatCount(c.examples) }),
      element("td", { class: "num", text: formatCount(c.results) })));
  if (!rows.length) rows.push(element("tr", {}, element("td", { colspan: 4, class: "muted", text: "No credited work yet." })));
  $("contributors").tBodies[0].replaceChildren(...rows);
}

// A worker's trust record in a few words: checks passed/failed, how often its results are still checked.
function trustText(trust) {
  if (!trust) return "–";
  if (trust.excluded) return trust.banned ? "banned" : "excluded";
  const checked = `${trust.checks_passed} checks ok`;
  const rate = trust.check_probability != null ? ` · ${Math.round(trust.check_probability * 100)}% checked` : "";
  const outliers = trust.outliers ? ` · ${trust.outliers} outliers` : "";
  return checked + rate + outliers;
}

function trustTitle(trust) {
  if (!trust) return "";
  const refused = Object.entries(trust.refused || {}).map(([reason, n]) => `${reason} ${n}`).join(", ") || "none";
  return `results ${trust.results}, accepted ${trust.accepted}, refused: ${refused}` + (trust.excluded ? `; ${trust.excluded}` : "");
}

function banButton(worker) {
  const button = element("button", { type: "button", class: "small", text: "Ban", title: "Close this client and refuse its id (admin)" });
  button.addEventListener("click", () =>
    act(() => api.ban(projectId, worker.id), () => showMessage(message, `Banned ${worker.id}: it was closed and its id is refused.`, "ok")));
  return button;
}

function fillForm() {
  const form = $("hyper");
  if (formFilled) return;
  const optimizer = project.optimizer || {};
  form.learning_rate.value = optimizer.learning_rate ?? "";
  form.l1_decay.value = optimizer.l1_decay ?? 0;
  form.l2_decay.value = optimizer.l2_decay ?? 0;
  form.iteration_ms.value = project.iteration_ms ?? "";
  form.aggregation.value = project.aggregation ?? "centered_clip";
  $("optimizer-name").textContent = optimizer.name ? `Optimizer: ${optimizer.name}. Changes take effect at the next iteration.` : "";
  formFilled = true;
}

async function act(action, done) {
  showMessage(message, "");
  try {
    const result = await action();
    done?.(result);
    if (pollTimer) await poll();
  } catch (error) {
    showMessage(message, error.message);
  }
}

async function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = 0;
  await polling;
}

$("hyper").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = event.target;
  const changes = {
    iteration_ms: Number(form.iteration_ms.value),
    aggregation: form.aggregation.value,
    optimizer: { learning_rate: Number(form.learning_rate.value), l1_decay: Number(form.l1_decay.value), l2_decay: Number(form.l2_decay.value) },
  };
  act(() => api.update(projectId, changes), () => {
    formFilled = false;
    showMessage(message, `Applied: learning rate ${changes.optimizer.learning_rate}, L1 ${changes.optimizer.l1_decay}, L2 ${changes.optimizer.l2_decay}, T ${changes.iteration_ms} ms, ${changes.aggregation} aggregation.`, "ok");
  });
});
// Grow the project's dataset while it trains: the master hands the new shards out within an iteration or two.
async function addData() {
  const file = $("add-zip").files[0];
  const message = $("add-message");
  const bar = $("add-progress");
  if (!file || !project) return showMessage(message, "Choose a zip of class folders first.");
  showMessage(message, `Uploading ${file.name}…`, "info");
  bar.style.width = "0%";
  $("add-data").disabled = true;
  try {
    const datasetId = typeof project.dataset === "string" ? project.dataset : project.dataset.id;
    const manifest = await addExamples(datasetId, { zip: file, onProgress: (fraction) => (bar.style.width = `${(fraction * 100).toFixed(1)}%`) });
    bar.style.width = "100%";
    showMessage(message, `Added: ${manifest.name} now has ${formatCount(manifest.splits.train.count)} training examples (revision ${manifest.revision}).`, "ok");
  } catch (error) {
    bar.style.width = "0%";
    showMessage(message, `Refused: ${error.message}`, "error");
  } finally {
    $("add-data").disabled = false;
  }
}

$("add-data").addEventListener("click", addData);
$("start").addEventListener("click", () => act(() => api.start(projectId)));
$("pause").addEventListener("click", () => act(() => api.pause(projectId)));
$("delete").addEventListener("click", async () => {
  if (!confirm(`Delete project "${project?.name || projectId}"? Its parameters and history are lost; download the closure first to keep them.`)) return;
  showMessage(message, "");
  await stopPolling();
  try {
    await api.remove(projectId);
    location.assign("dashboard.html");
  } catch (error) {
    showMessage(message, error.message);
    pollTimer = setInterval(poll, 1000);
  }
});
$("x-axis").addEventListener("change", drawCharts);
$("metrics-csv").addEventListener("click", () => downloadText(metricsCsv(metrics), `${projectId}-metrics.csv`));
$("about").addEventListener("submit", (event) => {
  event.preventDefault();
  const description = event.target.description.value.trim();
  act(() => api.update(projectId, { description }), () => {
    aboutFilled = false;
    showMessage(message, description ? "Description saved: volunteers see it next to the project's name." : "Description removed.", "ok");
  });
});
for (const button of document.querySelectorAll("button[data-copy]")) {
  button.addEventListener("click", async () => {
    const copied = await copyField($(button.dataset.copy));
    showMessage($("copy-message"), copied ? "Copied." : "Select the text and copy it.", copied ? "ok" : "info");
  });
}

// The researcher's text for volunteers: shown (as text, never HTML) and put in the form once.
function showAbout() {
  const text = project.description || "";
  $("description-shown").textContent = text;
  $("description-shown").classList.toggle("hidden", !text);
  if (aboutFilled) return;
  $("about").description.value = text;
  aboutFilled = true;
}

// The link and command a researcher hands out, on the master's public URL when it has one.
async function showShare() {
  const config = await api.config().catch(() => ({}));
  const origin = config.public_url || location.origin;
  $("share-link").value = shareLink(origin, projectId);
  $("worker-command").value = workerCommand(origin, projectId);
}
$("track").addEventListener("change", async (event) => {
  if (event.target.checked) {
    tracker = new Boss(project, { trainers: 0, track: true });
    tracker.addEventListener("eval", ({ detail }) => {
      trackerEvals.push(detail);
      const figure = $("tracker-figure");
      figure.textContent = `${formatPercent(detail.accuracy)} at iteration ${formatCount(detail.iteration)} (${formatCount(detail.examples)} test images)`;
      Object.assign(figure.dataset, { iteration: detail.iteration, accuracy: detail.accuracy });
      drawCharts();
    });
    await tracker.start();
  } else {
    tracker?.stop();
    tracker = null;
    $("tracker-figure").textContent = "";
  }
});

if (!projectId) showChooser().catch((error) => showMessage($("chooser-message"), `Could not list the projects: ${error.message}`));
else {
  $("download").href = api.closureUrl(projectId);
  $("standalone").href = api.closurePageUrl(projectId);
  $("predict").href = `predict.html?project=${encodeURIComponent(projectId)}`;
  showShare();
  poll().then(() => (pollTimer = setInterval(poll, 1000)));
}
