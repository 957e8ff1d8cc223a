import { api } from "../api.js";
import { Boss, defaultTrainerCount } from "../boss.js";
import { element, formatBytes, formatCount, formatPercent, formatRate, showMessage, datasetName } from "../format.js";
import { cacheUsage, clearShardCache } from "../shard-cache.js";
import { capTrainers, deviceStatement, downloadBytes } from "../volunteer-info.js";
import { Tally } from "../volunteer-tally.js";
import { volunteerId } from "../volunteer-id.js";

const $ = (id) => document.getElementById(id);
const list = $("projects");
const button = $("contribute");
const trainersInput = $("trainers");
const engineSelect = $("engine");
const predictInput = $("predict");
const message = $("message");
let boss = null;
let accepted = new Map();
let pollTimer = 0;
let drawQueued = false;
let shownProjects = [];
let idleCache = { shards: 0, bytes: 0 };
const manifests = new Map(); // dataset id -> manifest promise
const tally = new Tally(localStorage);
const cores = navigator.hardwareConcurrency || 1;

trainersInput.max = cores;
trainersInput.value = capTrainers(defaultTrainerCount(), cores).count;
engineSelect.value = new URLSearchParams(location.search).get("engine") || "auto";

function selectedProject() {
  return list.querySelector("input[name=project]:checked")?.value || null;
}

async function loadProjects() {
  if (boss?.figures().state === "reconnecting") return; // the trainers find the master back first
  try {
    const [config, projects] = await Promise.all([api.config(), api.projects()]);
    const wanted = selectedProject() || new URLSearchParams(location.search).get("project") || config.default_project;
    const running = projects.filter((p) => p.status === "running");
    const shown = running.length ? running : projects;
    if (message.dataset.source === "projects") {
      showMessage(message, "");
      delete message.dataset.source;
    }
    list.replaceChildren();
    shownProjects = shown;
    if (!shown.length) {
      list.append(element("li", { class: "muted", text: "No projects yet. A researcher creates one on the New project page." }));
      return;
    }
    const chosen = shown.find((p) => p.id === wanted) || running[0] || shown[0];
    for (const project of shown) {
      const accuracy = project.metrics?.test_accuracy ?? project.test_accuracy;
      list.append(
        element("li", {},
          element("label", {},
            element("input", { type: "radio", name: "project", value: project.id, checked: project.id === chosen.id, disabled: Boolean(boss) }),
            element("div", {},
              element("div", { class: "name", text: project.name || project.id }),
              project.description ? element("div", { class: "about", text: project.description }) : null,
              element("div", { class: "meta", text: [datasetName(project.dataset), `iteration ${formatCount(project.iteration ?? 0)}`, accuracy != null ? `test accuracy ${formatPercent(accuracy)}` : null].filter(Boolean).join(" · ") })),
            element("span", { class: "spacer" }),
            element("span", { class: `badge ${project.status}`, text: project.status }))));
    }
    button.disabled = false;
    if (!performance.getEntriesByName("mlitb:interactive").length) performance.mark("mlitb:interactive");
    updateDashboardLink();
    describeCost();
  } catch (error) {
    if (boss) return; // the trainers' reconnecting state says it already
    showMessage(message, `Could not load the projects: ${error.message}`);
    message.dataset.source = "projects";
  }
}

function updateDashboardLink() {
  const id = selectedProject();
  const link = $("dashboard-link");
  link.classList.toggle("hidden", !id);
  if (id) link.href = `dashboard.html?project=${encodeURIComponent(id)}`;
}

async function contribute() {
  const id = selectedProject();
  if (!id) return;
  showMessage(message, "");
  button.disabled = true;
  try {
    const project = await api.project(id);
    boss = new Boss(project, { trainers: capTrainersInput(), engine: engineSelect.value, predict: predictInput.checked });
    tally.endSession();
    boss.addEventListener("change", queueDraw);
    await boss.start();
    button.textContent = "Stop";
    button.classList.add("danger");
    list.querySelectorAll("input").forEach((input) => (input.disabled = true));
    engineSelect.disabled = true;
    pollTimer = setInterval(pollAccepted, 2000);
    $("clear-cache").disabled = true;
  } catch (error) {
    boss?.stop();
    boss = null;
    showMessage(message, `Could not start: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

function stop() {
  if (boss) tally.update(sessionFigures(boss.figures()));
  tally.endSession();
  boss?.stop();
  $("clear-cache").disabled = false;
  refreshCacheUsage();
  clearInterval(pollTimer);
  button.textContent = "Contribute";
  button.classList.remove("danger");
  list.querySelectorAll("input").forEach((input) => (input.disabled = false));
  engineSelect.disabled = false;
  queueDraw();
  boss = null;
}

async function pollAccepted() {
  if (!boss || boss.figures().state === "reconnecting") return;
  try {
    const project = await api.project(boss.project.id);
    for (const worker of project.workers || []) accepted.set(worker.id, worker.accepted ?? 0);
    queueDraw();
    showCredit(await api.credit(boss.project.id, volunteerId()));
  } catch {
    /* the next poll tries again */
  }
}

function queueDraw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(draw);
}

let lastFigures = null;
function draw() {
  drawQueued = false;
  const figures = boss ? boss.figures() : { ...(lastFigures || {}), state: "stopped", examplesPerS: 0, trainers: [] };
  lastFigures = figures;
  const totals = boss ? tally.update(sessionFigures(figures)) : tally.update({});
  $("state").textContent = figures.state === "reconnecting" ? "reconnecting…" : figures.state;
  $("state").className = `badge ${figures.state.split(" ")[0]}`;
  $("state").dataset.state = figures.state;
  $("state").dataset.reconnects = figures.reconnects ?? 0;
  drawConnectionLine(figures);
  $("examples-per-s").textContent = formatRate(figures.examplesPerS);
  $("shards-cached").textContent = formatCount(figures.shardsCached ?? 0);
  const cacheBytes = boss ? figures.download?.cacheBytes ?? 0 : idleCache.bytes;
  $("cache-size").textContent = formatBytes(cacheBytes);
  $("cache-size").dataset.bytes = cacheBytes;
  $("iterations").textContent = formatCount(totals.iterations);
  $("examples").textContent = formatCount(totals.examples);
  $("accepted").textContent = formatCount(totals.accepted);
  Object.assign($("device").dataset, totals);
  const data = figures.download;
  if (data) {
    $("data-line").textContent = `Data: ${formatCount(data.fromCache)} shard${data.fromCache === 1 ? "" : "s"} from this browser's cache, ${formatCount(data.downloaded)} downloaded (${formatBytes(data.bytes)} unpacked)${data.downloading > 0 ? `, ${data.downloading} downloading` : ""}.`;
    Object.assign($("data-line").dataset, { fromCache: data.fromCache, downloaded: data.downloaded, downloading: data.downloading });
  }
  $("trainer-table").tBodies[0].replaceChildren(
    ...(figures.trainers || []).map((t) =>
      element("tr", { "data-client": t.clientId || "" },
        element("td", { text: t.clientId || `#${t.index + 1}` }),
        element("td", { title: t.lastError || t.detail || "" }, element("span", { class: `badge ${t.state}`, text: t.state })),
        element("td", { text: t.engine || "–", title: [t.adapter, t.calibrated ? `${formatRate(t.calibrated)} examples/s calibrated` : "", t.engineDetail].filter(Boolean).join(" · ") }),
        element("td", { class: "num", text: formatRate(t.examplesPerS) }),
        element("td", { class: "num", text: formatCount(t.cached) }),
        element("td", { class: "num", text: formatCount(t.iterations) }),
        element("td", { class: "num", text: formatCount(acceptedFor(t)) }))));
}

// What is wrong with the connections right now, in words; hidden when nothing is.
function drawConnectionLine(figures) {
  const lines = [];
  if (figures.state === "reconnecting") {
    const waiting = (figures.trainers || []).find((t) => t.state === "reconnecting");
    lines.push(`The master is unreachable; reconnecting (${waiting?.detail || "soon"}). Training resumes by itself when it is back.`);
  }
  const dataError = figures.download?.dataError;
  if (dataError && boss) {
    lines.push(`The data server is unreachable (${dataError}); retrying in ${(figures.download.retryInMs / 1000).toFixed(1)} s.`);
  }
  const slow = (figures.trainers || []).find((t) => t.engine?.startsWith("js-fallback"));
  if (slow) lines.push(`The fast engine did not load: ${slow.engine}. Training runs at plain-JavaScript speed; tell the site's operator.`);
  const node = $("connection");
  node.dataset.engineFallback = Boolean(slow);
  node.textContent = lines.join(" ");
  node.classList.toggle("hidden", !lines.length);
  node.dataset.reconnecting = figures.state === "reconnecting";
  node.dataset.dataError = Boolean(dataError && boss);
}

// results accepted over every connection this trainer had (a new one after each reconnect)
function acceptedFor(trainer) {
  return (trainer.clientIds || []).reduce((n, id) => n + (accepted.get(id) || 0), 0);
}

// This session's figures, which the tally adds to what earlier visits contributed.
function sessionFigures(figures) {
  const trainers = figures.trainers || [];
  return { iterations: figures.iterations ?? 0, examples: figures.examples ?? 0, accepted: trainers.reduce((n, t) => n + acceptedFor(t), 0) };
}

// The trainer count asked for, capped at this device's cores, with a note when capped.
function capTrainersInput() {
  const { count, note } = capTrainers(trainersInput.value, cores);
  trainersInput.value = count;
  $("trainers-note").textContent = note;
  $("trainers-note").classList.toggle("hidden", !note);
  return count;
}

// Before the button: how much the selected project downloads and what the device will do.
async function describeCost() {
  const project = shownProjects.find((p) => p.id === selectedProject());
  const node = $("cost");
  if (!project) {
    node.textContent = "";
    return;
  }
  const datasetId = typeof project.dataset === "string" ? project.dataset : project.dataset?.id;
  if (!manifests.has(datasetId)) manifests.set(datasetId, api.dataset(datasetId).catch(() => null));
  const { bytes, shards } = downloadBytes(await manifests.get(datasetId));
  if (project.id !== selectedProject()) return; // another project was chosen meanwhile
  node.textContent = deviceStatement({ bytes, shards, trainers: Number(trainersInput.value) || 1, cores, formatBytes });
  Object.assign(node.dataset, { bytes, shards, project: project.id });
}

async function refreshCacheUsage() {
  idleCache = await cacheUsage();
  queueDraw();
}

async function clearCache() {
  if (boss) return;
  $("clear-cache").disabled = true;
  try {
    await clearShardCache();
    $("cache-message").textContent = "Cleared: the next contribution downloads its data again.";
  } catch (error) {
    $("cache-message").textContent = `Could not clear the cache: ${error.message}`;
  } finally {
    $("clear-cache").disabled = false;
    await refreshCacheUsage();
    draw(); // the size shown agrees with the message now, not at the next animation frame
    $("cache-message").dataset.cleared = idleCache.shards === 0;
  }
}

list.addEventListener("change", () => {
  updateDashboardLink();
  describeCost();
});
button.addEventListener("click", () => (boss ? stop() : contribute()));
trainersInput.addEventListener("change", () => {
  const count = capTrainersInput();
  boss?.setTrainerCount(count);
  describeCost();
});
$("clear-cache").addEventListener("click", clearCache);
refreshCacheUsage();
loadProjects();
setInterval(loadProjects, 5000);
draw();

// What the master credits this volunteer with in the project (accepted, checked work, every visit).
function showCredit(credit) {
  const mine = credit?.volunteer;
  const node = $("credit");
  if (!mine) return;
  node.textContent = `The master credits this browser with ${formatCount(mine.examples)} examples in ${formatCount(mine.results)} accepted results for this project, over every visit.`;
  node.dataset.examples = mine.examples;
}
