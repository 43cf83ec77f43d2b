"""Neuron reports: HTML pages and report.json per unit, per layer and per model (see
:class:`NeuronReport`; where the files go: :mod:`captum_fv.report.layout`)."""

from .budget import REPORT_REFINEMENT
from .core import NeuronReport
from .folder import OutputFolderError
from .layer import LayerReport
from .layout import LAYERS_DIR, layer_folder, layer_folder_name, unit_folder
from .records import BuiltUnit, unit_identity, unit_name
from .resume import ResumePlan

__all__ = [
    "LAYERS_DIR",
    "REPORT_REFINEMENT",
    "BuiltUnit",
    "LayerReport",
    "NeuronReport",
    "OutputFolderError",
    "ResumePlan",
    "layer_folder",
    "layer_folder_name",
    "unit_folder",
    "unit_identity",
    "unit_name",
]
