"""Dataset examples: the images that drive a unit highest, lowest, and along the way between.

One streaming pass over a dataset keeps, for every unit at once, the top-k and bottom-k examples
(with where in the channel map the unit peaks) and the spectrum of the Distill article: examples
near chosen quantiles of the unit's activation distribution. Memory is O(units x k) plus a fixed
uniform sample for the quantiles, never O(dataset). The images of this package's datasets are
decoded ahead in a DataLoader worker (``num_workers``); the examples found are the same.

Inside a ``torch.distributed`` process group the pass is shared among the ranks: each reads and
runs its round-robin share of the batches, and the states are merged exactly (see
:meth:`DatasetExamples.collect`), so every rank gets the result one process would have found.

Models with extra arguments, in Captum's ``additional_forward_args`` terms:

* per example: a dict dataset item may hold ``"additional_forward_args"`` next to its image, a
  tuple (or one value) of tensors for that example; they are batched with the images (a tuple
  element-wise) and the model runs as ``model(images, *args)`` on those examples;
* for every example: ``collect(..., additional_forward_args=(...))``; a tensor with first dim 1
  is broadcast to each batch, as in Captum, anything else is passed as given.

>>> ex = fv.DatasetExamples(model, "_blocks.8").collect(fv.data.sample_images(size=64, crops=4), k=4)
>>> ex.top(12).indices, ex.names(12)[:2], ex.images(12, "bottom").shape
(tensor([...]), ['... (crop ...)', '... (crop ...)'], torch.Size([4, 3, 64, 64]))

Implementation: ``_extremes`` (streaming top/bottom-k, exact merge), ``_sample`` (quantile
sample), ``_units`` (unit values and positions), ``_collect`` (the pass), ``_examples`` (results).
"""

from __future__ import annotations

from ..items import IMAGE_KEYS
from ._collect import DatasetExamples, MiningState, Settings
from ._examples import Examples, ExampleSet, Mined, Ranked, Which

__all__ = [
    "IMAGE_KEYS",
    "DatasetExamples",
    "ExampleSet",
    "Examples",
    "Mined",
    "MiningState",
    "Ranked",
    "Settings",
    "Which",
]
