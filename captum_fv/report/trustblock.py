"""A report's trust block: every unit's positive optimum and facets judged by
:class:`captum_fv.trust.TrustScorer` against the report's dataset, with what decides it for
``--resume``."""

from __future__ import annotations

from typing import Any, Collection, Dict, List, Optional, Sequence

import torch

from .. import fingerprint as fp_lib
from .. import trust as trust_lib
from ..addressing import OUTPUT
from ..modelinfo import module_of
from ..recipe import get_recipe
from ..unit import Unit
from ..visualization import NeuronVisualization, Visualization
from .budget import TRUST_PROBE_STEPS


def transfer_names(models: Sequence[Any], names: Optional[Sequence[str]]) -> List[str]:
    """One name per transfer model: ``names``, or "transfer 1", "transfer 2", ..."""
    out = list(names) if names is not None else [f"transfer {i + 1}" for i in range(len(models))]
    if len(out) != len(models):
        raise ValueError(f"{len(out)} transfer_names for {len(models)} transfer_models; give one name per model")
    return out


def probe_steps(recipe: str, layer: str) -> int:
    """Steps of the plain Fourier probe a report's trust block renders per unit: for hidden units
    (what it was calibrated on) of a recipe whose pictures are held to natural statistics
    (``Recipe.trust_probe``), else 0 (no probe)."""
    return TRUST_PROBE_STEPS if get_recipe(recipe).trust_probe and layer != OUTPUT else 0


def trust_settings(models: Sequence[Any], names: Sequence[str], probe_steps: int = 0) -> Dict[str, Any]:
    """:func:`captum_fv.trust.settings`, each transfer model's name, architecture and weights, and
    the Fourier probe's steps (when there is one)."""
    transfer = [dict(fp_lib.model_digest(module_of(m), m), name=n) for m, n in zip(models, names)]
    return dict(trust_lib.settings(), transfer=transfer, **({"probe_steps": probe_steps} if probe_steps else {}))


class TrustBlock:
    """The scorer of one build, shared by its units; when the dataset is too small, every unit
    gets the verdict "not enough examples" with the reason instead."""

    def __init__(
        self,
        forward_func: Any,
        layer: Any,
        dataset: Any,
        transfer_models: Sequence[Any],
        names: Sequence[str],
        seed: int,
        additional_forward_args: Any,
        output: Any,
    ) -> None:
        self.scorer: Optional[trust_lib.TrustScorer] = None
        self.shortfall = ""
        self.probes: Dict[str, List[float]] = {}  # unit file name -> its Fourier probe's value
        try:
            self.scorer = trust_lib.TrustScorer(
                forward_func,
                layer,
                dataset,
                transfer_models=transfer_models,
                transfer_names=names,
                seed=seed,
                additional_forward_args=additional_forward_args,
                output=output,
            )
        except trust_lib.NotEnoughExamples:
            k = trust_lib.MIN_EXAMPLES
            self.shortfall = (
                f"the dataset has {len(dataset)} images, the trust measures need at least {trust_lib.needed(k)} "
                f"({k} top and {k} bottom examples); build the report on a larger dataset (--data)"
            )

    def probe(
        self, viz: NeuronVisualization, chunks: Sequence[Sequence[Unit]], wanted: Collection[str], seed: int, **kw: Any
    ) -> None:
        """Plain Fourier renders of the chunks holding ``wanted`` units (file names), one image a
        unit (chunk ``i`` seeded ``seed + i``, so a unit's probe does not depend on which chunks a
        run redoes): the values :meth:`unit` judges pictures held to natural statistics by."""
        if self.scorer is None:
            return
        for i, chunk in enumerate(chunks):
            if not any(u.file_name in wanted for u in chunk):
                continue
            found = viz.visualize(
                [u.selector for u in chunk], seed=seed + i, recipe="fourier", max_batch=len(chunk), **kw
            )
            self.probes.update({u.file_name: v.activation["positive"].flatten().tolist() for u, v in zip(chunk, found)})

    def unit(self, unit: Unit, v: Visualization, mined: Any, layer: str) -> trust_lib.TrustRecord:
        """The record of the unit's positive optimum and facets (the negative optimum as the
        bottom explanation), reusing their activations and the examples ``mined`` (>= 29 a side)."""
        if self.scorer is None:
            return trust_lib.TrustRecord.not_enough(unit.title, layer, f"not enough examples: {self.shortfall}.")
        values = torch.cat([v.activation["positive"].flatten(), v.activation["facets"].flatten()]).tolist()
        pictures = torch.cat([v.positive, v.facets])
        probe = self.probes.get(unit.file_name)
        return self.scorer.score(
            pictures, unit.selector, mined, negative_inputs=v.negative, values=values, probe_values=probe
        )
