"""The tutorial notebooks run headless, cell by cell, with tiny settings (CAPTUM_FV_FAST=1).

Each notebook runs in its own kernel started from *this* interpreter (a kernelspec written to a
temporary JUPYTER_PATH), so the kernel sees exactly the packages the tests see, whatever
kernels are installed elsewhere. The working directory is a temporary folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Tuple

import ipykernel  # noqa: F401  (the test extra installs all four: a missing one must fail, not skip)
import jupytext
import nbclient
import nbformat
import pytest

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
SCRIPTS = sorted(TUTORIALS.glob("*.py"))
EXPECTED = {
    "EfficientNet_FeatureViz_GettingStarted.ipynb",
    "EfficientNet_FeatureViz_Regularization.ipynb",
    "EfficientNet_FeatureViz_DiversityAndInteraction.ipynb",
    "EfficientNet_FeatureViz_CaptumWorkflow.ipynb",
    "Auditing_Your_Own_Model.ipynb",
    "How_Features_Evolve.ipynb",
    "When_To_Trust_A_Visualization.ipynb",
    "Pictures_Worth_Believing.ipynb",
}
KERNEL = "captum-fv-tests"
CELL_TIMEOUT_S = 180


def cells(nb: nbformat.NotebookNode) -> List[Tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


@pytest.fixture(scope="module")
def jupyter_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JUPYTER_PATH holding one kernelspec that runs ipykernel with this interpreter."""
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "captum-fv tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return root


def test_every_tutorial_is_present():
    assert EXPECTED <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_tutorial_is_stored_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert 'os.environ.get("CAPTUM_FV_FAST", "0") == "1"' in code[0].source


def test_every_notebook_has_its_script_and_vice_versa():
    assert {p.stem for p in NOTEBOOKS} == {p.stem for p in SCRIPTS}


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_script_and_notebook_hold_the_same_cells(path: Path):
    """The .py is the source (tutorials/README.md): `jupytext --sync` must have been run after editing it."""
    script = jupytext.read(path)
    notebook = nbformat.read(path.with_suffix(".ipynb"), as_version=4)
    assert cells(script) == cells(notebook), f"run: jupytext --sync tutorials/{path.name}"


@pytest.fixture
def kernel_env(tmp_path: Path, jupyter_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment a notebook kernel started by the test inherits."""
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("CAPTUM_FV_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_tutorial_runs(path: Path, tmp_path: Path, kernel_env: None):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors


def stream_text(cell: nbformat.NotebookNode) -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream")


@pytest.mark.slow
def test_progress_bars_do_not_flood_a_notebook(tmp_path: Path, kernel_env: None):
    """This kernel has no ipywidgets: tqdm.auto would store every redraw of a text bar (one per
    postfix update alone: 13 for 200 steps), and warn "IProgress not found" on import."""
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "import torch\nimport captum_fv as fv\nmodel = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))"
            ),
            nbformat.v4.new_code_cell('result = fv.render(model, "0:1", steps=200, size=16, progress=True)'),
        ]
    )
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    imports, render = (stream_text(c) for c in nb.cells)
    assert "IProgress not found" not in imports
    assert "render:" in render  # the bar is drawn...
    assert render.count("\r") + render.count("\n") < 10  # ...a handful of times
