"""Per-unit seeding of the global RNGs, for attribution methods that draw from them."""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """The global RNGs (torch, NumPy, ``random``) seeded for one unit's attribution and restored
    afterwards: GradientSHAP and the like draw from them (Captum's GradientSHAP from NumPy's), so
    a unit's attribution does not depend on which units the process attributed before it, nor
    on which process it runs in."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=cuda):
            torch.random.default_generator.manual_seed(seed)
            for d in cuda:
                with torch.cuda.device(d):
                    torch.cuda.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
