"""Objectives: what to maximize. Tiny functions that compose with ``+ - * /``.

Sign convention: every objective is **maximized**; a negative optimum is ``-objective`` and a
penalty (l1, l2, total_variation, blur, alignment) is a cost to subtract.

>>> from captum_fv import objectives as obj
>>> o = obj.channel("_blocks.8", 3) - 0.5 * obj.diversity("_blocks.8")
"""
from .base import Context, Objective, as_objective
from .directions import direction, random_direction
from .diversity import diversity, gram, similarity
from .interpolation import alignment, channel_interpolate
from .matching import inversion, style
from .penalties import blur, l1, l2, total_variation
from .units import channel, class_logit, class_probability, deepdream, layer, neuron

__all__ = [
    "Context", "Objective", "as_objective",
    "neuron", "channel", "deepdream", "layer", "class_logit", "class_probability",
    "direction", "random_direction", "diversity", "gram", "similarity",
    "channel_interpolate", "alignment", "inversion", "style",
    "l1", "l2", "total_variation", "blur",
]
