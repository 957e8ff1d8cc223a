"""The model: ConvNetJS layer definitions, the flat parameter layout and the numpy engine."""

from mlitb.model.engine import BatchGradient, Net
from mlitb.model.layout import ParamBlock
from mlitb.model.rng import mulberry32
from mlitb.model.spec import SpecError

__all__ = ["BatchGradient", "Net", "ParamBlock", "SpecError", "mulberry32"]
