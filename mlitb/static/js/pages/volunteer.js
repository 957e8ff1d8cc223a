import { api } from "../api.js";
import { Boss, defaultTrainerCount } from "../boss.js";
import { element, formatBytes, formatCount, formatPercent, formatRate, showMessage, datasetName } from "../format.js";

const $ = (id) => document.getElementById(id);
const list = $("projects");
const button = $("contribute");
const trainersInput = $("trainers");
const predictInput = $("predict");
const message = $("message");
let boss = null;
let accepted = new Map();
let pollTimer = 0;
let drawQueued = false;

trainersInput.value = defaultTrainerCount();

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
              element("div", { class: "meta", text: [datasetName(project.dataset), `iteration ${formatCount(project.iteration ?? 0)}`, accuracy != null ? `test accuracy ${formatPercent(accuracy)}` : null].filter(Boolean).join(" · ") })),
            element("span", { class: "spacer" }),
            element("span", { class: `badge ${project.status}`, text: project.status }))));
    }
    button.disabled = false;
    if (!performance.getEntriesByName("mlitb:interactive").length) performance.mark("mlitb:interactive");
    updateDashboardLink();
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
    boss = new Boss(project, { trainers: Number(trainersInput.value) || 1, predict: predictInput.checked });
    boss.addEventListener("change", queueDraw);
    await boss.start();
    button.textContent = "Stop";
    button.classList.add("danger");
    list.querySelectorAll("input").forEach((input) => (input.disabled = true));
    pollTimer = setInterval(pollAccepted, 2000);
  } catch (error) {
    boss?.stop();
    boss = null;
    showMessage(message, `Could not start: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

function stop() {
  boss?.stop();
  clearInterval(pollTimer);
  button.textContent = "Contribute";
  button.classList.remove("danger");
  list.querySelectorAll("input").forEach((input) => (input.disabled = false));
  queueDraw();
  boss = null;
}

async function pollAccepted() {
  if (!boss || boss.figures().state === "reconnecting") return;
  try {
    const project = await api.project(boss.project.id);
    for (const worker of project.workers || []) accepted.set(worker.id, worker.accepted ?? 0);
    queueDraw();
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
  // results accepted over every connection this trainer had (a new one after each reconnect)
  const acceptedFor = (t) => (t.clientIds || []).reduce((n, id) => n + (accepted.get(id) || 0), 0);
  $("state").textContent = figures.state === "reconnecting" ? "reconnecting…" : figures.state;
  $("state").className = `badge ${figures.state.split(" ")[0]}`;
  $("state").dataset.state = figures.state;
  $("state").dataset.reconnects = figures.reconnects ?? 0;
  drawConnectionLine(figures);
  $("examples-per-s").textContent = formatRate(figures.examplesPerS);
  $("shards-cached").textContent = formatCount(figures.shardsCached ?? 0);
  $("cache-size").textContent = formatBytes(figures.download?.cacheBytes ?? 0);
  $("cache-size").dataset.bytes = figures.download?.cacheBytes ?? 0;
  $("iterations").textContent = formatCount(figures.iterations ?? 0);
  $("examples").textContent = formatCount(figures.examples ?? 0);
  const data = figures.download;
  if (data) {
    $("data-line").textContent = `Data: ${formatCount(data.fromCache)} shard${data.fromCache === 1 ? "" : "s"} from this browser's cache, ${formatCount(data.downloaded)} downloaded (${formatBytes(data.bytes)})${data.downloading > 0 ? `, ${data.downloading} downloading` : ""}.`;
    Object.assign($("data-line").dataset, { fromCache: data.fromCache, downloaded: data.downloaded, downloading: data.downloading });
  }
  const totalAccepted = (figures.trainers || []).reduce((n, t) => n + acceptedFor(t), 0);
  if (boss) $("accepted").textContent = formatCount(totalAccepted);
  $("trainer-table").tBodies[0].replaceChildren(
    ...(figures.trainers || []).map((t) =>
      element("tr", { "data-client": t.clientId || "" },
        element("td", { text: t.clientId || `#${t.index + 1}` }),
        element("td", { title: t.lastError || t.detail || "" }, element("span", { class: `badge ${t.state}`, text: t.state })),
        element("td", { text: t.engine || "–" }),
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
  const node = $("connection");
  node.textContent = lines.join(" ");
  node.classList.toggle("hidden", !lines.length);
  node.dataset.reconnecting = figures.state === "reconnecting";
  node.dataset.dataError = Boolean(dataError && boss);
}

list.addEventListener("change", updateDashboardLink);
button.addEventListener("click", () => (boss ? stop() : contribute()));
trainersInput.addEventListener("change", () => boss?.setTrainerCount(Number(trainersInput.value) || 1));
loadProjects();
setInterval(loadProjects, 5000);
draw();
