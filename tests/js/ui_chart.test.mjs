import { test } from "node:test";
import assert from "node:assert/strict";
import { niceTicks, extent, formatTick, thin } from "../../mlitb/static/js/chart.js";

test("ticks are round numbers that cover the range", () => {
  assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(3, 97, 4), [25, 50, 75]);
  assert.deepEqual(niceTicks(0, 2000, 4), [0, 500, 1000, 1500, 2000]);
  const ticks = niceTicks(0.0123, 0.0871, 5);
  assert.ok(ticks.length >= 3 && ticks.length <= 8);
  for (const t of ticks) assert.ok(t >= 0.0123 && t <= 0.0871);
});

test("a flat range still gets ticks", () => {
  assert.ok(niceTicks(5, 5, 4).length >= 2);
  assert.ok(niceTicks(0, 0, 4).includes(0));
});

test("extent ignores non-finite points and honours fixed bounds", () => {
  assert.equal(extent([[], []]), null);
  assert.deepEqual(extent([[[1, 0.5], [2, NaN]], [[3, 0.7]]], { yMin: 0, yMax: 1 }), { x0: 1, x1: 3, y0: 0, y1: 1 });
});

test("thin keeps the ends and the limit", () => {
  const points = Array.from({ length: 1001 }, (_, i) => [i, i]);
  const out = thin(points, 100);
  assert.equal(out.length, 100);
  assert.deepEqual(out[0], [0, 0]);
  assert.deepEqual(out.at(-1), [1000, 1000]);
});

test("tick labels are short", () => {
  assert.equal(formatTick(0.30000000000000004), "0.3");
  assert.equal(formatTick(25000), "25k");
  assert.equal(formatTick(3200000), "3.2M");
});

import { chartLayout, nearestIndex, formatValue } from "../../mlitb/static/js/chart.js";

const overlaps = (a, b) => a && b && a[0] < b[1] && b[0] < a[1];

test("axis labels never overlap tick labels, however wide the ticks", () => {
  for (const yTickWidth of [0, 12, 31, 60]) {
    const layout = chartLayout({ width: 360, height: 220, yTickWidth, xLabel: "iteration", yLabel: "examples / s" });
    assert.ok(!overlaps(layout.yLabelSpan, layout.yTickSpan), JSON.stringify(layout));
    assert.ok(!overlaps(layout.xTickSpan, layout.xLabelSpan), JSON.stringify(layout));
    assert.ok(layout.yTickSpan[0] >= layout.yLabelSpan[1]);
    assert.ok(layout.xLabelSpan[1] <= 220 && layout.xTickSpan[0] >= layout.top + layout.plotH);
  }
  const bare = chartLayout({ width: 300, height: 200, yTickWidth: 20 });
  assert.equal(bare.yLabelSpan, null);
  assert.equal(bare.xLabelSpan, null);
});

test("hover finds the nearest point and shows readable values", () => {
  assert.equal(nearestIndex([[0, 1], [10, 2], [20, 3]], 13), 1);
  assert.equal(nearestIndex([[0, 1], [10, NaN]], 9), 0);
  assert.equal(nearestIndex([], 1), -1);
  assert.equal(formatValue(0.123456), "0.1235");
  assert.equal(formatValue(2000), "2000");
  assert.equal(formatValue(0.00001234), "1.234e-5");
});
