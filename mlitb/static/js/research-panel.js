// The dashboard's research panel (issue 15): a learning-rate multiplier per layer,
// editable while the project trains (0 freezes a layer), and "verify this closure"
// (the master runs `mlitb verify` on the project's closure against its data server).
// Its own module so the dashboard page only mounts it and hands it each fresh project.

import { adminRequest } from "./api.js";
import { element, showMessage } from "./format.js";

const PARAMETERISED = new Set(["conv", "fc", "softmax"]);

function describe(layer) {
  switch (layer.type) {
    case "conv": return `${layer.filters} filters ${layer.sx}×${layer.sy ?? layer.sx}`;
    case "fc": return `${layer.num_neurons} units`;
    case "softmax": return `${layer.num_classes} classes (and its fc)`;
    default: return "";
  }
}

export function mountResearchPanel(root, projectId) {
  const $ = (selector) => root.querySelector(selector);
  const table = $("#layer-rates tbody");
  const message = $("#research-message");
  let shownFor = null; // the multipliers the inputs were filled from: refilled only when they change

  function update(project) {
    const key = JSON.stringify([project.layers, project.lr_multipliers]);
    if (key === shownFor || !project.layers) return;
    shownFor = key;
    const rates = project.lr_multipliers || project.layers.map(() => 1);
    table.replaceChildren(...project.layers.flatMap((layer, i) => PARAMETERISED.has(layer.type)
      ? [element("tr", { "data-layer": i },
          element("td", { class: "num", text: String(i) }),
          element("td", { text: layer.type }),
          element("td", { class: "muted", text: describe(layer) }),
          element("td", {}, element("input", { type: "number", name: `lr-${i}`, min: "0", max: "100", step: "any", value: String(rates[i]), "aria-label": `learning-rate multiplier of layer ${i}` })),
          element("td", { class: "muted", text: rates[i] === 0 ? "frozen" : "" }))]
      : []));
    table.dataset.rates = JSON.stringify(rates);
  }

  async function apply(event) {
    event.preventDefault();
    const current = JSON.parse(table.dataset.rates || "[]");
    const rates = current.map((rate, i) => {
      const input = $(`input[name=lr-${i}]`);
      return input ? Number(input.value) : rate;
    });
    showMessage(message, "");
    try {
      const project = await adminRequest(`/api/projects/${encodeURIComponent(projectId)}`, { method: "PATCH", body: { lr_multipliers: rates } });
      shownFor = null;
      update(project);
      showMessage(message, `Applied at the next iteration: ${rates.map((r, i) => `layer ${i} × ${r}`).filter((_, i) => $(`input[name=lr-${i}]`)).join(", ")}.`, "ok");
    } catch (error) {
      showMessage(message, error.message);
    }
  }

  async function verify() {
    const button = $("#verify");
    const output = $("#verify-result");
    button.disabled = true;
    showMessage(output, "Fetching the closure's data and recomputing its test figures…", "info");
    try {
      const report = await adminRequest(`/api/projects/${encodeURIComponent(projectId)}/verify`, { method: "POST" });
      showMessage(output, `Closure at iteration ${report.iteration}: ${report.text}`, report.ok ? "ok" : "error");
      output.dataset.ok = String(report.ok);
    } catch (error) {
      showMessage(output, `Could not verify: ${error.message}`);
      output.dataset.ok = "false";
    } finally {
      button.disabled = false;
    }
  }

  $("#layer-rates-form").addEventListener("submit", apply);
  $("#verify").addEventListener("click", verify);
  return { update };
}
