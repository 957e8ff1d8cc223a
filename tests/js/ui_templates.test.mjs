import { test } from "node:test";
import assert from "node:assert/strict";
import { TEMPLATES, fitLayers, fitProblem, fitTemplate, suggestedName } from "../../mlitb/static/js/templates.js";

const pets = { name: "pets", shape: [32, 32, 3], classes: ["cat", "dog"] };

test("a template re-fitted to a dataset takes its image shape and class count", () => {
  const layers = fitTemplate(TEMPLATES.mnist, pets);
  assert.deepEqual(layers[0], { type: "input", out_sx: 32, out_sy: 32, out_depth: 3 });
  assert.equal(layers.at(-1).num_classes, 2);
  assert.equal(TEMPLATES.mnist.layers[0].out_sx, 28, "the template itself is untouched");
  assert.equal(fitProblem(layers, pets, 2), "");
});

test("pool layers whose window no longer fits small images are dropped", () => {
  const icons = { name: "icons", shape: [4, 4, 1], classes: ["a", "b", "c"] };
  const layers = fitTemplate(TEMPLATES.cifar, icons);
  // 4 -> conv 4 -> pool 2 -> conv 2 -> pool 1 -> conv 1 -> (pool 2 on 1 does not fit: dropped)
  assert.deepEqual(layers.map((l) => l.type), ["input", "conv", "pool", "conv", "pool", "conv", "softmax"]);
  const tiny = fitTemplate(TEMPLATES.mnist, { name: "t", shape: [2, 2, 1], classes: ["a", "b"] });
  assert.deepEqual(tiny.map((l) => l.type), ["input", "conv", "pool", "conv", "softmax"]);
});

test("fitProblem names what does not fit", () => {
  const digits = fitTemplate(TEMPLATES.mnist, null);
  assert.match(fitProblem(digits, pets, 10), /images are 32×32×3 but the input layer is 28×28×1/);
  assert.match(fitProblem(fitLayers(digits, { shape: [32, 32, 3] }), pets, 10), /2 classes but the model outputs 10/);
  assert.equal(fitProblem(digits, null, 10), "");
});

test("a suggested name says which data and which kind of net", () => {
  assert.equal(suggestedName(TEMPLATES.cifar, pets), "pets convnet");
  assert.equal(suggestedName(TEMPLATES.cifar, null), "");
});
