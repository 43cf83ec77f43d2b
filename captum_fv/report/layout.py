"""Where a report's files go, decided here once for reports, resume, trust and evolution::

    <out>/index.html              the model index: every layer, its units and verdicts
    <out>/report.json             every number, with a top-level "layers" list
    <out>/layers/<layer>/         one layer: index.html (its unit grid), report.json, atlas/
    <out>/layers/<layer>/units/<unit>/   one unit: index.html, unit.json, its PNGs
    <out>/layers/<layer>/checkpoints/<label>/units/<unit>/   an evolution's unit under one checkpoint

A layer's folder name is its dotted name (``_blocks.8``); ``#k`` (the k-th call of a module
called twice) becomes ``@k``, other characters a URL or file system would misread become ``_``,
and the model output (class units) is ``output``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Union

from ..addressing import OUTPUT
from .folder import UNITS_DIR

#: The folder that holds one folder per layer.
LAYERS_DIR = "layers"
#: A layer's activation atlas, inside the layer's folder (``atlas.html`` and its images).
ATLAS_DIR = "atlas"
#: The folder name of the model output's units (``layer=None``: class units).
OUTPUT_FOLDER = "output"

_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]")


def layer_folder_name(layer: str) -> str:
    """The folder name of a layer key: ``"_blocks.8"`` -> ``"_blocks.8"``, ``"a.relu#1"`` ->
    ``"a.relu@1"``, ``""`` (the model output) -> ``"output"``.

    >>> layer_folder_name("features.3#1"), layer_folder_name("")
    ('features.3@1', 'output')
    """
    if layer == OUTPUT:
        return OUTPUT_FOLDER
    name = _UNSAFE.sub("_", layer.replace("#", "@"))
    return "_" + name if name.startswith(".") else name


def layer_folder(root: Union[str, Path], layer: str) -> Path:
    """``<root>/layers/<layer folder name>``."""
    return Path(root) / LAYERS_DIR / layer_folder_name(layer)


def unit_folder(root: Union[str, Path], layer: str, unit: str) -> Path:
    """``<root>/layers/<layer>/units/<unit>``: the folder of unit ``unit`` (a file name such as
    ``channel_0003``) of ``layer``.

    >>> unit_folder("report", "_blocks.8", "channel_0003").as_posix()
    'report/layers/_blocks.8/units/channel_0003'
    """
    return layer_folder(root, layer) / UNITS_DIR / unit
