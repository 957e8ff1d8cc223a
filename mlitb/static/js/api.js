// The master's HTTP API (docs/architecture.md). Admin calls carry the token,
// asked for once and kept in this browser's localStorage.

import { adminToken, askForToken } from "./admin-token.js";

export { adminToken };

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

export async function requestJson(url, { method = "GET", body, headers = {}, signal } = {}) {
  const init = { method, headers: { ...headers }, signal };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(url, init);
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: text.slice(0, 300) };
    }
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// An admin request: asks for the token if none is kept, and again once if it is refused.
export async function adminRequest(url, options = {}) {
  let token = adminToken.get() || (await askForToken());
  for (let attempt = 0; ; attempt++) {
    try {
      return await requestJson(url, { ...options, headers: { ...options.headers, Authorization: `Bearer ${token}` } });
    } catch (error) {
      if (!(error instanceof ApiError) || (error.status !== 401 && error.status !== 403) || attempt > 0) throw error;
      adminToken.clear();
      token = await askForToken("The master refused that token. Enter the admin token:");
    }
  }
}

let configPromise;
export const getConfig = () => (configPromise ??= requestJson("/api/config"));

export const api = {
  config: getConfig,
  projects: () => requestJson("/api/projects"),
  project: (id) => requestJson(`/api/projects/${encodeURIComponent(id)}`),
  metrics: (id, since = 0) => requestJson(`/api/projects/${encodeURIComponent(id)}/metrics?since=${since}`),
  checkLayers: (layers, signal) => requestJson("/api/layers/check", { method: "POST", body: { layers }, signal }),
  closure: (id) => requestJson(`/api/projects/${encodeURIComponent(id)}/closure`),
  closureUrl: (id) => `/api/projects/${encodeURIComponent(id)}/closure`,
  closurePageUrl: (id) => `/api/projects/${encodeURIComponent(id)}/closure.html`,
  createProject: (definition) => adminRequest("/api/projects", { method: "POST", body: definition }),
  createFromClosure: (closureText) => adminRequest("/api/projects/from-closure", { method: "POST", body: closureText }),
  start: (id) => adminRequest(`/api/projects/${encodeURIComponent(id)}/start`, { method: "POST" }),
  pause: (id) => adminRequest(`/api/projects/${encodeURIComponent(id)}/pause`, { method: "POST" }),
  update: (id, changes) => adminRequest(`/api/projects/${encodeURIComponent(id)}`, { method: "PATCH", body: changes }),
  ban: (id, worker) => adminRequest(`/api/projects/${encodeURIComponent(id)}/workers/${encodeURIComponent(worker)}/ban`, { method: "POST" }),
  remove: (id) => adminRequest(`/api/projects/${encodeURIComponent(id)}`, { method: "DELETE" }),
  datasets: async () => requestJson(`${(await getConfig()).data_url.replace(/\/$/, "")}/datasets`),
  dataset: async (id) => requestJson(`${(await getConfig()).data_url.replace(/\/$/, "")}/datasets/${encodeURIComponent(id)}`),
};

// POST a dataset zip (and optionally a test zip) to the data server with upload
// progress (fetch has none). Options travel in the query string (docs/data.md).
export async function uploadDataset(train, { test, options = {}, onProgress } = {}) {
  const form = new FormData();
  form.append("train", train, train.name);
  if (test) form.append("test", test, test.name);
  return postToDataServer("/datasets", form, options, onProgress);
}

// Grow a dataset (POST /datasets/{id}/examples): a zip of class folders, or one
// image with its class label.
export async function addExamples(datasetId, { zip, image, label, onProgress } = {}) {
  const form = new FormData();
  if (zip) form.append("zip", zip, zip.name || "examples.zip");
  if (image) form.append("image", image, image.name || "image.png");
  return postToDataServer(`/datasets/${encodeURIComponent(datasetId)}/examples`, form, image ? { label } : {}, onProgress);
}

async function postToDataServer(path, form, options, onProgress) {
  const { data_url: dataUrl } = await getConfig();
  const token = adminToken.get() || (await askForToken());
  const query = new URLSearchParams(Object.entries(options).filter(([, v]) => v !== undefined && v !== ""));
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${dataUrl.replace(/\/$/, "")}${path}${query.size ? `?${query}` : ""}`);
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.upload.onprogress = (event) => event.lengthComputable && onProgress?.(event.loaded / event.total);
    xhr.onerror = () => reject(new ApiError(0, { error: "the upload failed: the data server could not be reached" }));
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = { error: xhr.responseText.slice(0, 300) };
      }
      if (xhr.status === 401 || xhr.status === 403) adminToken.clear();
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    };
    xhr.send(form);
  });
}
