"""Neuron reports: HTML pages and report.json per unit (see :class:`NeuronReport`)."""
from .core import NeuronReport, unit_name

__all__ = ["NeuronReport", "unit_name"]
