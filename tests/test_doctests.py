"""Every ``>>>`` example in the package runs, one case per docstring (named by its qualified name).

The examples share a small namespace: ``fv``, ``torch``, ``captum``, ``obj`` (captum_fv.objectives),
``model`` (an EfficientNet-Lite-shaped net with thin random layers, so ``"_blocks.8"`` exists and
has the real 112 channels), ``images`` (a few small random images) and ``dataset`` (a tiny one).
Each runs in a fresh folder holding ``photos/cats/a.jpg`` and ``photos/dogs/b.png``, and what it
registers is forgotten afterwards.
"""

from __future__ import annotations

import doctest
import importlib
import os
import pkgutil
from typing import Any, Dict, List

import captum
import captum.attr
import pytest
import torch
from PIL import Image

import captum_fv
from captum_fv import registry
from captum_fv.models.efficientnet import EfficientNetLite, EfficientNetSpec, Stage

# Importing __main__ would run the command line.
_SKIP_MODULES = {"captum_fv.__main__"}
SKIP_PREFIXES: tuple = ()
_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

# Lite0's block layout (same repeats, strides and the widths the examples name: 32-channel stem,
# 112 channels at _blocks.8), but every block unexpanded with 3x3 kernels and a thin head.
_THIN = EfficientNetSpec(
    name="thin EfficientNet-Lite0 (doctests)",
    stages=tuple(
        Stage(*row)
        for row in (
            (1, 3, 1, 1, 32, 8),
            (2, 3, 2, 1, 8, 8),
            (2, 3, 2, 1, 8, 16),
            (3, 3, 2, 1, 16, 16),
            (3, 3, 1, 1, 16, 112),
            (4, 3, 2, 1, 112, 16),
            (1, 3, 1, 1, 16, 16),
        )
    ),
    head_channels=32,
)


def _package_modules() -> List[str]:
    names = ["captum_fv"]
    for info in pkgutil.walk_packages(captum_fv.__path__, "captum_fv."):
        if info.name not in _SKIP_MODULES and not info.name.startswith(SKIP_PREFIXES):
            names.append(info.name)
    return sorted(names)


def _collect() -> List[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests: List[doctest.DocTest] = []
    for name in _package_modules():
        module = importlib.import_module(name)
        tests += [t for t in finder.find(module, name) if t.examples]
    return sorted(tests, key=lambda t: t.name)


_TESTS = _collect()


def _shared_namespace() -> Dict[str, Any]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = EfficientNetLite(_THIN).eval()
        images = torch.rand(4, 3, 64, 64)
    return {
        "fv": captum_fv,
        "captum_fv": captum_fv,
        "torch": torch,
        "captum": captum,
        "obj": captum_fv.objectives,
        "model": model,
        "images": images,
        "dataset": captum_fv.data.sample_images(size=64, crops=2),
    }


@pytest.fixture(scope="module")
def shared() -> Dict[str, Any]:
    return _shared_namespace()


@pytest.fixture
def restore_registry():
    """Examples register objectives and methods; later tests must see only the built-ins."""
    tables = (registry._OBJECTIVES, registry._ATTRIBUTIONS)
    saved = [dict(t) for t in tables]
    yield
    for table, before in zip(tables, saved):
        table.clear()
        table.update(before)


def _make_photos(root) -> None:
    for name, colour in (("cats/a.jpg", (200, 120, 40)), ("dogs/b.png", (40, 90, 200))):
        path = root / "photos" / name
        path.parent.mkdir(parents=True)
        Image.new("RGB", (48, 40), colour).save(path)


def test_examples_are_found() -> None:
    # The package has dozens of examples; a broken finder must not pass silently.
    assert len(_TESTS) >= 30


@pytest.mark.parametrize("test", _TESTS, ids=[t.name for t in _TESTS])
def test_docstring_examples(
    test: doctest.DocTest, shared: Dict[str, Any], tmp_path, monkeypatch, restore_registry
) -> None:
    _make_photos(tmp_path)
    monkeypatch.chdir(tmp_path)  # examples that save files write here
    test.globs = {**shared, **test.globs}  # the module's own names win
    runner = doctest.DocTestRunner(optionflags=_FLAGS)
    report = _Output()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        results = runner.run(test, out=report, clear_globs=True)
    assert results.failed == 0, f"{test.name} ({os.path.relpath(test.filename or '?')}):\n{report}"


class _Output:
    """Collects the runner's report so the assertion message shows what differed."""

    def __init__(self) -> None:
        self.parts: List[str] = []

    def __call__(self, text: str) -> None:
        self.parts.append(text)

    def __str__(self) -> str:
        return "".join(self.parts)
