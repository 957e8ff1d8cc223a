"""mlitb: machine learning in the browser, served from Python."""

__version__ = "0.1.0"
