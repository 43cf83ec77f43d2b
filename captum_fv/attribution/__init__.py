"""Attribution pairing: which pixels of a unit's examples drive it, computed by Captum.

The selector that drove a visualization drives the attribution too: an int channel becomes
``captum_fv.channel(c)`` (a callable Captum accepts), so Captum attributes the same spatial mean
the visualization maximized. Units of the model output (``layer=None``, an int class) pair with
Captum's ``IntegratedGradients(target=k)``. Arguments follow Captum: inputs, then the neuron
selector; every keyword but ``attribution``, ``tolerance`` and ``max_steps`` is Captum's.

>>> ex = fv.DatasetExamples(model, "_blocks.8").collect(dataset, k=4)
>>> a = fv.attribute(model, "_blocks.8", ex.images(12), 12, n_steps=16)
>>> a.relative_delta  # completeness check: |delta| / |f(x) - f(baseline)| per image
tensor([...])
>>> heat = fv.overlay(ex.images(12)[0], a.attributions[0])  # (3, H, W) RGB
"""

from ._attribute import Attribution, attribute
from ._baselines import grey_baselines, patch_mask, path_batch
from ._methods import Adapter, NeuronMethod, builtin_methods
from ._segments import check_cuts

__all__ = [
    "attribute",
    "Attribution",
    "NeuronMethod",
    "Adapter",
    "builtin_methods",
    "check_cuts",
    "grey_baselines",
    "patch_mask",
    "path_batch",
]
