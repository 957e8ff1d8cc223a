// A small line chart on a canvas: several series, nice ticks, an HTML legend.

export const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

// Round tick values covering [min, max], at most about `count` of them.
export function niceTicks(min, max, count = 5) {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (min === max) {
    const pad = Math.abs(min) > 0 ? Math.abs(min) * 0.1 : 1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const first = Math.ceil(min / step - 1e-9) * step;
  const ticks = [];
  for (let v = first; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

export function extent(series, { yMin, yMax } = {}) {
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const points of series) {
    for (const [x, y] of points) {
      if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
  }
  if (x0 > x1) return null;
  if (yMin !== undefined) y0 = Math.min(y0, yMin);
  if (yMax !== undefined) y1 = Math.max(y1, yMax);
  if (x0 === x1) x1 = x0 + 1;
  if (y0 === y1) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  return { x0, x1, y0, y1 };
}

export function formatTick(v) {
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${+(v / 1e3).toPrecision(3)}k`;
  return String(+v.toPrecision(4));
}

// At most `limit` points, keeping the first and last.
export function thin(points, limit) {
  if (points.length <= limit) return points;
  const stride = (points.length - 1) / (limit - 1);
  const out = [];
  for (let i = 0; i < limit; i++) out.push(points[Math.round(i * stride)]);
  return out;
}

export class LineChart {
  constructor(container, { title = "", xLabel = "", yLabel = "", series = [], yMin, yMax, xFormat = formatTick, yFormat = formatTick } = {}) {
    this.options = { xLabel, yLabel, yMin, yMax, xFormat, yFormat };
    this.series = series.map((s, i) => ({ color: PALETTE[i % PALETTE.length], ...s }));
    this.data = this.series.map(() => []);
    container.classList.add("chart");
    container.replaceChildren();
    if (title) {
      const heading = document.createElement("h3");
      heading.textContent = title;
      container.append(heading);
    }
    this.canvas = document.createElement("canvas");
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", title || yLabel);
    const legend = document.createElement("div");
    legend.className = "chart-legend";
    for (const s of this.series) {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = s.color;
      if (s.dashed) swatch.classList.add("dashed");
      item.append(swatch, s.name);
      legend.append(item);
    }
    container.append(this.canvas, legend);
    this.container = container;
    this.pending = false;
    new ResizeObserver(() => this.draw()).observe(this.canvas);
  }

  setData(data) {
    this.data = data;
    this.container.dataset.points = data.map((points) => points.length).join(",");
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.draw();
      });
    }
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const style = getComputedStyle(this.container);
    const ink = style.getPropertyValue("--chart-ink").trim() || "#475569";
    const grid = style.getPropertyValue("--chart-grid").trim() || "#e2e8f0";
    ctx.font = "11px system-ui, sans-serif";
    const { xLabel, yLabel, xFormat, yFormat } = this.options;
    const box = extent(this.data, this.options);
    const left = 46, right = 10, top = 8, bottom = 34;
    const plotW = width - left - right, plotH = height - top - bottom;
    if (!box || plotW < 20 || plotH < 20) {
      ctx.fillStyle = ink;
      ctx.textAlign = "center";
      ctx.fillText("no data yet", width / 2, height / 2);
      return;
    }
    const xTicks = niceTicks(box.x0, box.x1, Math.max(2, Math.floor(plotW / 70)));
    const yTicks = niceTicks(box.y0, box.y1, Math.max(2, Math.floor(plotH / 35)));
    const x0 = Math.min(box.x0, xTicks[0]), x1 = Math.max(box.x1, xTicks.at(-1));
    const y0 = Math.min(box.y0, yTicks[0]), y1 = Math.max(box.y1, yTicks.at(-1));
    const px = (x) => left + ((x - x0) / (x1 - x0 || 1)) * plotW;
    const py = (y) => top + plotH - ((y - y0) / (y1 - y0 || 1)) * plotH;

    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    ctx.fillStyle = ink;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const t of yTicks) {
      const y = Math.round(py(t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + plotW, y);
      ctx.stroke();
      ctx.fillText(yFormat(t), left - 6, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const t of xTicks) {
      const x = Math.round(px(t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + plotH);
      ctx.stroke();
      ctx.fillText(xFormat(t), x, top + plotH + 4);
    }
    if (xLabel) ctx.fillText(xLabel, left + plotW / 2, top + plotH + 19);
    if (yLabel) {
      ctx.save();
      ctx.translate(10, top + plotH / 2);
      ctx.rotate(-Math.PI / 2);
      ctx.textBaseline = "middle";
      ctx.fillText(yLabel, 0, 0);
      ctx.restore();
    }

    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    this.series.forEach((s, i) => {
      const points = thin((this.data[i] || []).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)), Math.max(2, Math.floor(plotW * 1.5)));
      if (!points.length) return;
      ctx.strokeStyle = s.color;
      ctx.setLineDash(s.dashed ? [6, 4] : []);
      ctx.beginPath();
      points.forEach(([x, y], k) => (k ? ctx.lineTo(px(x), py(y)) : ctx.moveTo(px(x), py(y))));
      ctx.stroke();
      if (points.length === 1) {
        ctx.fillStyle = s.color;
        ctx.beginPath();
        ctx.arc(px(points[0][0]), py(points[0][1]), 3, 0, 2 * Math.PI);
        ctx.fill();
      }
    });
    ctx.setLineDash([]);
  }
}
