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

// Where the plot sits inside a chart of `width`×`height`: room on the left for
// the widest y tick label (and the rotated y label beside it), at the bottom for
// the x tick labels (and the x label below them), so no label overlaps another.
// Also says where each label ends up, which the page exposes for its tests.
export function chartLayout({ width, height, yTickWidth, xLabel, yLabel, font = 11 }) {
  const gap = 6;
  const yLabelBand = yLabel ? font + 4 : 0;
  const left = Math.ceil(2 + yLabelBand + yTickWidth + gap);
  const bottom = gap / 2 + font + (xLabel ? gap / 2 + font + 4 : 4);
  const top = 8, right = 12;
  return {
    left, right, top, bottom, plotW: width - left - right, plotH: height - top - bottom,
    yLabelX: 2 + yLabelBand / 2, // the rotated label's centre line
    yLabelSpan: yLabel ? [2, 2 + yLabelBand] : null,
    yTickSpan: [left - gap - yTickWidth, left - gap],
    xTickSpan: [height - bottom + gap / 2, height - bottom + gap / 2 + font],
    xLabelSpan: xLabel ? [height - font - 4, height - 4] : null,
  };
}

// The index of the point whose x is nearest to `x` (points need not be sorted); -1 if none.
export function nearestIndex(points, x) {
  let best = -1, distance = Infinity;
  points.forEach(([px, py], i) => {
    if (!Number.isFinite(px) || !Number.isFinite(py)) return;
    const d = Math.abs(px - x);
    if (d < distance) [best, distance] = [i, d];
  });
  return best;
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
    this.tip = document.createElement("div");
    this.tip.className = "chart-tip hidden";
    this.tip.setAttribute("role", "status");
    container.append(this.canvas, legend, this.tip);
    this.container = container;
    this.pending = false;
    this.hoverX = null; // the data x under the pointer, or null
    this.frame = null; // the last draw's scales, for hover
    this.canvas.addEventListener("pointermove", (event) => this.hover(event.offsetX));
    this.canvas.addEventListener("pointerleave", () => this.hover(null));
    new ResizeObserver(() => this.draw()).observe(this.canvas);
  }

  setXLabel(label) {
    if (this.options.xLabel === label) return;
    this.options.xLabel = label;
    this.draw();
  }

  // Show the values of every series at the x nearest the pointer (offsetX in CSS px; null hides).
  hover(offsetX) {
    const frame = this.frame;
    if (offsetX === null || !frame || offsetX < frame.left || offsetX > frame.left + frame.plotW) {
      this.hoverX = null;
      this.tip.classList.add("hidden");
      this.draw();
      return;
    }
    const x = frame.x0 + ((offsetX - frame.left) / frame.plotW) * (frame.x1 - frame.x0);
    const nearest = this.data.map((points) => (points || [])[nearestIndex(points || [], x)]);
    const anchor = nearest.filter(Boolean).sort((a, b) => Math.abs(a[0] - x) - Math.abs(b[0] - x))[0];
    if (!anchor) return this.hover(null);
    this.hoverX = anchor[0];
    const { xFormat, xLabel } = this.options;
    const rows = this.series.map((s, i) => {
      const point = nearest[i];
      if (!point) return null;
      const row = document.createElement("div");
      const swatch = document.createElement("i");
      swatch.style.background = s.color;
      const elsewhere = point[0] !== this.hoverX ? ` (at ${xFormat(point[0])})` : ""; // a sparser series' nearest point
      row.append(swatch, `${s.name}: ${formatValue(point[1])}${elsewhere}`);
      Object.assign(row.dataset, { series: s.name, x: point[0], value: point[1] });
      return row;
    }).filter(Boolean);
    const head = document.createElement("div");
    head.className = "chart-tip-x";
    head.textContent = `${xLabel || "x"} ${xFormat(this.hoverX)}`;
    this.tip.replaceChildren(head, ...rows);
    this.tip.dataset.x = this.hoverX;
    this.tip.classList.remove("hidden");
    const px = frame.px(this.hoverX) + this.canvas.offsetLeft;
    const flip = px > this.container.clientWidth / 2;
    this.tip.style.left = flip ? "" : `${px + 10}px`;
    this.tip.style.right = flip ? `${this.container.clientWidth - px + 10}px` : "";
    this.tip.style.top = `${this.canvas.offsetTop + frame.top}px`;
    this.draw();
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
    const rough = chartLayout({ width, height, yTickWidth: 0, xLabel, yLabel });
    const yTicks = box ? niceTicks(box.y0, box.y1, Math.max(2, Math.floor(rough.plotH / 35))) : [];
    const yTickWidth = Math.max(0, ...yTicks.map((t) => ctx.measureText(yFormat(t)).width));
    const layout = chartLayout({ width, height, yTickWidth, xLabel, yLabel });
    const { left, top, plotW, plotH } = layout;
    this.container.dataset.layout = JSON.stringify(layout);
    this.frame = null;
    if (!box || plotW < 20 || plotH < 20) {
      ctx.fillStyle = ink;
      ctx.textAlign = "center";
      ctx.fillText("no data yet", width / 2, height / 2);
      return;
    }
    const xTicks = niceTicks(box.x0, box.x1, Math.max(2, Math.floor(plotW / 70)));
    const x0 = Math.min(box.x0, xTicks[0]), x1 = Math.max(box.x1, xTicks.at(-1));
    const y0 = Math.min(box.y0, yTicks[0]), y1 = Math.max(box.y1, yTicks.at(-1));
    const px = (x) => left + ((x - x0) / (x1 - x0 || 1)) * plotW;
    const py = (y) => top + plotH - ((y - y0) / (y1 - y0 || 1)) * plotH;
    this.frame = { left, top, plotW, plotH, x0, x1, px };

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
      ctx.fillText(yFormat(t), layout.yTickSpan[1], y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (const t of xTicks) {
      const x = Math.round(px(t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + plotH);
      ctx.stroke();
      ctx.fillText(xFormat(t), x, layout.xTickSpan[0]);
    }
    if (xLabel) ctx.fillText(xLabel, left + plotW / 2, layout.xLabelSpan[0]);
    if (yLabel) {
      ctx.save();
      ctx.translate(layout.yLabelX, top + plotH / 2);
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
    if (this.hoverX !== null) this.drawHover(ctx, px, py, ink);
  }

  // A guide line at the hovered x and a dot on each series' nearest point.
  drawHover(ctx, px, py, ink) {
    const x = Math.round(px(this.hoverX)) + 0.5;
    ctx.strokeStyle = ink;
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x, this.frame.top);
    ctx.lineTo(x, this.frame.top + this.frame.plotH);
    ctx.stroke();
    this.series.forEach((s, i) => {
      const point = (this.data[i] || [])[nearestIndex(this.data[i] || [], this.hoverX)];
      if (!point) return;
      ctx.fillStyle = s.color;
      ctx.beginPath();
      ctx.arc(px(point[0]), py(point[1]), 3.5, 0, 2 * Math.PI);
      ctx.fill();
    });
  }
}

// A hovered value: four significant digits, no exponent for everyday sizes.
export function formatValue(v) {
  if (!Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e7) ? v.toExponential(3) : String(+v.toPrecision(4));
}
