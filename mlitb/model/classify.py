"""Class probabilities of raw uint8 pixels: the project's normalisation, then the net, dropout off.

The one formula every Python path that predicts uses (the worker's prediction
chunks, the master's fallback process, `mlitb predict` on a closure), so their
answers agree exactly for the same parameters.
"""

from __future__ import annotations

import numpy as np

from mlitb.model.engine import Net


def classify(net: Net, params: np.ndarray, pixels: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """Probabilities (N, classes) of uint8 pixels (N, H, W, C), input = pixel × scale + offset."""
    x = pixels.astype(np.float32) * np.float32(scale) + np.float32(offset)
    return net.predict(params, x)
