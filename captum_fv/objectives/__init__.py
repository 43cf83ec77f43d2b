"""Objectives: what to maximize. Tiny functions that compose with ``+ - * /``.

Sign convention: every objective is **maximized**; a negative optimum is ``-objective``, a
diversity term is added and a penalty (l1, l2, total_variation, blur, alignment) is a cost to
subtract.

>>> from captum_fv import objectives as obj
>>> o = obj.channel("_blocks.8", 3) + 0.5 * obj.diversity("_blocks.8")

Each built-in is written with :func:`objective` (a per-slot function of the activations) and
registered by it under its name; write your own the same way.
"""

# Import order is registration order, which is the order `captum-fv objectives` lists them in.
# isort: off
# The registry lists objectives in the order they are defined: the unit objectives come first.
from .base import Context, Objective, as_objective
from .factory import PerSlot, objective
from .units import channel, class_logit, class_probability, deepdream, layer, neuron
from .directions import direction, random_direction
from .diversity import diversity, gram, similarity
from .interpolation import alignment, channel_interpolate
from .matching import inversion, style
from .penalties import blur, l1, l2, total_variation
from .prior import feature_prior
# isort: on

__all__ = [
    "Context",
    "Objective",
    "as_objective",
    "objective",
    "PerSlot",
    "neuron",
    "channel",
    "deepdream",
    "layer",
    "class_logit",
    "class_probability",
    "direction",
    "random_direction",
    "diversity",
    "gram",
    "similarity",
    "channel_interpolate",
    "alignment",
    "inversion",
    "style",
    "l1",
    "l2",
    "total_variation",
    "blur",
    "feature_prior",
]
