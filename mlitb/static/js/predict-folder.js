// "Predict a folder": a folder's images sent to the live project's prediction endpoint
// (POST /api/projects/{id}/predict), where the connected workers classify them; the answers
// come back in the folder's order. Batches of `batch` files, a 429 waited out as the master asks,
// the admin token sent when this browser keeps one (a project can require it).

import { ApiError, adminToken } from "./api.js";
import { askForToken } from "./admin-token.js";

const IMAGE = /\.(png|jpe?g|gif|bmp|webp|tiff?|ppm|pgm)$/i;
const MAX_RETRIES = 20;

export function imageFiles(files) {
  return [...files].filter((f) => IMAGE.test(f.name) || f.type.startsWith("image/"))
    .sort((a, b) => pathOf(a).localeCompare(pathOf(b)));
}

export const pathOf = (file) => file.webkitRelativePath || file.name;

export async function predictFiles(projectId, files, { batch = 500, onProgress = () => {} } = {}) {
  const predictions = [];
  const chunks = [];
  for (let start = 0; start < files.length; start += batch) {
    const group = files.slice(start, start + batch);
    const answer = await post(projectId, group);
    answer.predictions.forEach((p, i) => predictions.push({ path: pathOf(group[i]), ...p }));
    chunks.push(...answer.chunks);
    onProgress(predictions.length, files.length);
  }
  return { predictions, chunks };
}

async function post(projectId, group) {
  const url = `/api/projects/${encodeURIComponent(projectId)}/predict`;
  let askedForToken = false;
  for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
    const form = new FormData();
    for (const file of group) form.append("files", file, file.name);
    const token = adminToken.get();
    const response = await fetch(url, { method: "POST", body: form, headers: token ? { Authorization: `Bearer ${token}` } : {} });
    if (response.status === 429) {
      await new Promise((resolve) => setTimeout(resolve, 1000 * Number(response.headers.get("Retry-After") || 1)));
      continue;
    }
    if (response.status === 401 && !askedForToken) {
      askedForToken = true;
      adminToken.clear();
      await askForToken("This project's predictions need the admin token:"); // kept by askForToken
      continue;
    }
    const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }
  throw new ApiError(429, { error: "the master kept refusing: too many requests from this address" });
}
