"""Neuron reports: HTML pages and report.json per unit (see :class:`NeuronReport`)."""

from .core import NeuronReport
from .folder import OutputFolderError
from .records import BuiltUnit, unit_identity, unit_name
from .resume import ResumePlan

__all__ = ["NeuronReport", "OutputFolderError", "BuiltUnit", "ResumePlan", "unit_name", "unit_identity"]
