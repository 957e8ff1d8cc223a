// Softmax over each row of logits, with the cross-entropy loss and its
// gradient (probs − onehot) when labels are given. Rows may be computed in place.

export function softmaxCrossEntropy(f, logits, probs, n, classes, labels, dlogits, first = 0) {
  let lossSum = 0, correct = 0;
  logits >>= 2; probs >>= 2; dlogits >>= 2;
  for (let e = 0; e < n; e++) {
    const xe = logits + e * classes, pe = probs + e * classes;
    let max = -Infinity;
    for (let j = 0; j < classes; j++) max = Math.max(max, f[xe + j]);
    const label = labels ? labels[first + e] : -1;
    const labelShifted = label >= 0 ? f[xe + label] - max : 0;
    let total = 0;
    for (let j = 0; j < classes; j++) total += (f[pe + j] = Math.exp(f[xe + j] - max));
    let best = 0;
    for (let j = 0; j < classes; j++) {
      f[pe + j] /= total;
      if (f[pe + j] > f[pe + best]) best = j;
    }
    if (label < 0) continue;
    lossSum += Math.log(total) - labelShifted;
    if (best === label) correct++;
    const de = dlogits + e * classes;
    for (let j = 0; j < classes; j++) f[de + j] = f[pe + j] - (j === label ? 1 : 0);
  }
  return { lossSum, correct };
}
