"""captum-fv: feature visualization for the Captum ecosystem.

Objectives are **maximized** everywhere: a unit's positive optimum maximizes it, its negative
optimum maximizes its negation, and penalties are costs you subtract.

>>> import captum_fv as fv
>>> v = fv.NeuronVisualization(model, "_blocks.8").visualize(12, facets=4, negative=True,
...                                                          size=64, steps=8, progress=False)
>>> v.positive.shape, v.negative.shape, v.facets.shape
(torch.Size([1, 3, 64, 64]), torch.Size([1, 3, 64, 64]), torch.Size([4, 3, 64, 64]))
"""

# First: progress installs the filter for tqdm.auto's "IProgress not found" warning, which is
# emitted once, when Captum (imported by the modules below) first imports tqdm.auto.
from . import (
    atlas,
    data,
    labels,
    metrics,
    models,
    objectives,
    param,
    progress,  # noqa: F401
    registry,
    transforms,
    trust,
)
from .accentuation import Accentuation, accentuate
from .addressing import resolve_layer
from .allocator import tune_cpu_allocator
from .attribution import Attribution, attribute
from .display import show_images
from .evolution import FeatureEvolution
from .heatmap import overlay
from .hooks import model_guard
from .inspection import LayerInfo, layers
from .mining import DatasetExamples, Examples, ExampleSet
from .objectives import Objective
from .recipe import Recipe, recipes
from .registry import register_attribution, register_objective
from .rendering import NonFiniteObjectiveError, RenderResult, render
from .report import NeuronReport
from .unit import ChannelSelector, Unit, as_units, channel
from .version import __version__ as __version__
from .visualization import NeuronVisualization, Visualization, activations

__all__ = [
    "atlas",
    "data",
    "labels",
    "metrics",
    "models",
    "objectives",
    "param",
    "transforms",
    "layers",
    "resolve_layer",
    "LayerInfo",
    "model_guard",
    "Objective",
    "render",
    "RenderResult",
    "NonFiniteObjectiveError",
    "recipes",
    "Recipe",
    "accentuate",
    "Accentuation",
    "channel",
    "ChannelSelector",
    "Unit",
    "as_units",
    "NeuronVisualization",
    "Visualization",
    "activations",
    "registry",
    "register_objective",
    "register_attribution",
    "DatasetExamples",
    "ExampleSet",
    "Examples",
    "attribute",
    "Attribution",
    "overlay",
    "NeuronReport",
    "FeatureEvolution",
    "trust",
    "tune_cpu_allocator",
    "show_images",
]
