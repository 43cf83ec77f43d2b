"""The 2-D layout of the sampled activations (UMAP when ``umap-learn`` is installed, else
scikit-learn's t-SNE) and the grid of cells whose members' activation vectors are averaged."""

from __future__ import annotations

import importlib.util
import random
import warnings
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

import numpy as np
import torch
from threadpoolctl import threadpool_limits

#: Methods :func:`embed` knows; "auto" is UMAP when importable, else t-SNE.
METHODS = ("auto", "umap", "tsne")
#: Dimensions the vectors are reduced to (PCA) before t-SNE, for speed.
TSNE_PCA_DIMS = 50
#: OpenMP/BLAS threads for the layout. One: scikit-learn's t-SNE spins its OpenMP threads, and on
#: a machine whose cores are busy two threads measured 5x slower than one (116 s vs 20 s for 1000
#: points); a layout of a few thousand samples takes seconds on one core.
LAYOUT_THREADS = 1


@dataclass
class AtlasLayout:
    """Each sample's place in the atlas: ``points`` (N, 2) in [0, 1] (x, y), and the method used
    (``"umap"``, ``"tsne"``, or ``"pca"`` for fewer than 5 samples)."""

    points: torch.Tensor
    method: str


@dataclass
class AtlasCell:
    """One non-empty grid cell: its ``row`` (0 at the top) and ``col``; ``members``: indices of
    its samples, nearest the cell's mean first; ``vector``: the mean of their activation vectors;
    ``units``: the strongest channels of the mean as (channel, value), largest first.
    ``projection_start`` / ``projection``: the rendered image's projection onto ``vector`` (the
    mean over positions of activation . vector / |vector|) before and after optimization."""

    row: int
    col: int
    members: torch.Tensor
    vector: torch.Tensor
    units: List[Tuple[int, float]] = field(default_factory=list)
    projection_start: Optional[float] = None
    projection: Optional[float] = None

    @property
    def count(self) -> int:
        return len(self.members)

    @property
    def name(self) -> str:
        """The cell's file stem, e.g. ``"r03_c07"``."""
        return f"r{self.row:02d}_c{self.col:02d}"


def umap_available() -> bool:
    """Whether ``umap-learn`` can be imported (``pip install captum-fv[atlas]``)."""
    return importlib.util.find_spec("umap") is not None


def _normalised(vectors: torch.Tensor) -> np.ndarray:
    # Unit rows: the layout then follows the direction of an activation (what a cell renders),
    # not its magnitude; Euclidean distance between unit rows is monotone in cosine distance.
    v = vectors.double()
    return (v / v.norm(dim=1, keepdim=True).clamp(min=1e-12)).numpy()


class _LeaveGlobalsAlone:
    """Restores numpy's and Python's global RNG afterwards (third-party code may draw from them)."""

    def __enter__(self) -> None:
        self.np_state, self.py_state = np.random.get_state(), random.getstate()

    def __exit__(self, *exc: Any) -> None:
        np.random.set_state(self.np_state)
        random.setstate(self.py_state)


def _umap(x: np.ndarray, seed: int) -> np.ndarray:
    import umap

    n = len(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state": wanted, for determinism
        reducer = umap.UMAP(n_components=2, n_neighbors=max(2, min(15, n - 1)), min_dist=0.05, random_state=seed)
        return np.asarray(reducer.fit_transform(x), dtype=np.float64)


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n = len(x)
    if x.shape[1] > TSNE_PCA_DIMS and n > TSNE_PCA_DIMS:
        x = PCA(TSNE_PCA_DIMS, random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, learning_rate="auto")
    return np.asarray(tsne.fit_transform(x), dtype=np.float64)


def _pca(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(0, keepdims=True)
    if len(x) < 2 or not np.any(x):
        return np.zeros((len(x), 2))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    out = x @ vt[:2].T
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


def unit_square(xy: np.ndarray, clip: float = 1.0) -> torch.Tensor:
    """Points scaled into [0, 1] per axis, the ``clip`` percent most extreme on each side pinned
    to the edge (so a few outliers do not squeeze everything else into a few cells)."""
    lo = np.percentile(xy, clip, axis=0)
    hi = np.percentile(xy, 100 - clip, axis=0)
    span = np.where(hi - lo > 1e-12, hi - lo, 1.0)
    return torch.from_numpy(np.clip((xy - lo) / span, 0.0, 1.0)).float()


def embed(vectors: torch.Tensor, method: str = "auto", seed: int = 0) -> AtlasLayout:
    """A 2-D layout of activation vectors (N, C), deterministic under ``seed``; the global
    numpy, Python and torch RNGs are left as they were.

    >>> lay = fv.atlas.embed(torch.randn(40, 8), method="tsne")
    >>> lay.points.shape, lay.method, bool(lay.points.min() >= 0), bool(lay.points.max() <= 1)
    (torch.Size([40, 2]), 'tsne', True, True)
    """
    if method not in METHODS:
        raise ValueError(f"unknown layout method {method!r}; use one of {', '.join(METHODS)}")
    if method == "umap" and not umap_available():
        raise ValueError("layout method 'umap' needs umap-learn: pip install 'captum-fv[atlas]' (or method='tsne')")
    if vectors.dim() != 2 or len(vectors) == 0:
        raise ValueError(f"expected activation vectors (N, C) with N >= 1, got shape {tuple(vectors.shape)}")
    if not bool(torch.isfinite(vectors).all()):
        raise ValueError("the activation vectors hold NaN or inf; check the model and the images")
    x = _normalised(vectors)
    chosen = ("umap" if umap_available() else "tsne") if method == "auto" else method
    with _LeaveGlobalsAlone(), threadpool_limits(LAYOUT_THREADS):
        if len(x) < 5:
            xy, chosen = _pca(x), "pca"
        elif chosen == "umap":
            xy = _umap(x, seed)
        else:
            xy = _tsne(x, seed)
    return AtlasLayout(unit_square(xy), chosen)


def cell_of(points: torch.Tensor, grid: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(row, col) of each point in a ``grid`` x ``grid`` grid, row 0 at the top (largest y)."""
    ij = (points * grid).floor().long().clamp(0, grid - 1)
    return grid - 1 - ij[:, 1], ij[:, 0]


def grid_cells(
    layout: AtlasLayout, vectors: torch.Tensor, grid: int = 20, min_count: int = 1, top_units: int = 5
) -> List[AtlasCell]:
    """The non-empty cells of a ``grid`` x ``grid`` grid over the layout (at most 20 x 20), each
    the mean of its members' vectors; cells with fewer than ``min_count`` members are dropped.
    Row-major order.

    >>> lay = fv.atlas.embed(torch.randn(40, 8), method="tsne")
    >>> cells = fv.atlas.grid_cells(lay, torch.randn(40, 8), grid=4)
    >>> 1 <= len(cells) <= 16, sum(c.count for c in cells)
    (True, 40)
    """
    if not isinstance(grid, int) or not 1 <= grid <= 20:
        raise ValueError(f"grid must be an int from 1 to 20 (at most 20 x 20 cells), got {grid!r}")
    if len(layout.points) != len(vectors):
        raise ValueError(f"the layout has {len(layout.points)} points but there are {len(vectors)} vectors")
    rows, cols = cell_of(layout.points, grid)
    flat = rows * grid + cols
    cells = []
    for cell in torch.unique(flat).tolist():
        members = torch.nonzero(flat == cell).flatten()
        if len(members) < min_count:
            continue
        mean = vectors[members].float().mean(0)
        dist = (vectors[members].float() - mean).norm(dim=1)
        members = members[torch.sort(dist, stable=True).indices]
        cells.append(AtlasCell(cell // grid, cell % grid, members, mean, strongest(mean, top_units)))
    return cells


def strongest(vector: torch.Tensor, k: int) -> List[Tuple[int, float]]:
    """The ``k`` channels with the largest values of ``vector``, as (channel, value)."""
    values, idx = torch.sort(vector.float(), descending=True, stable=True)
    return [(int(i), float(v)) for i, v in zip(idx[:k].tolist(), values[:k].tolist())]
