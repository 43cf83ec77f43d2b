"""captum_fv.progress picks a bar that suits where it runs (the real notebook run is in test_tutorials)."""

from __future__ import annotations

import io
import sys
import types

import pytest
from tqdm import notebook
from tqdm.std import tqdm as text_tqdm

from captum_fv import progress


def redraws(make_bar, steps: int = 200) -> int:
    """How many times a bar over ``steps`` items, with render()'s postfix updates, draws itself."""
    out = io.StringIO()
    bar = make_bar(range(steps), file=out, desc="render", leave=False)
    for step in bar:
        if step % 16 == 0:
            bar.set_postfix(objective=f"{step:.3g}")
    return out.getvalue().count("\r")


@pytest.fixture
def notebook_without_widgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    monkeypatch.setattr(notebook, "IProgress", None)


def test_outside_a_notebook_the_bar_is_tqdms_text_bar():
    assert not progress.in_notebook()  # pytest is not a Jupyter kernel
    bar = progress.progress_bar(range(3), disable=True)
    assert type(bar) is text_tqdm
    assert list(bar) == [0, 1, 2]


def test_in_notebook_recognises_a_jupyter_kernel(monkeypatch: pytest.MonkeyPatch):
    shell = type("ZMQInteractiveShell", (), {})()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert progress.in_notebook()
    monkeypatch.setenv("QT_API", "pyqt5")  # qtconsole: a kernel, but it renders text bars
    assert not progress.in_notebook()


def test_in_notebook_is_false_in_a_terminal_ipython(monkeypatch: pytest.MonkeyPatch):
    shell = type("TerminalInteractiveShell", (), {})()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert not progress.in_notebook()


def test_notebook_with_widgets_gets_the_widget_bar(monkeypatch: pytest.MonkeyPatch):
    class FakeWidgetBar:
        def __init__(self, iterable=None, **kwargs):
            self.iterable, self.kwargs = iterable, kwargs

    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    monkeypatch.setattr(notebook, "IProgress", object())
    monkeypatch.setattr(notebook, "tqdm", FakeWidgetBar)
    bar = progress.progress_bar(range(3), desc="render")
    assert isinstance(bar, FakeWidgetBar) and bar.kwargs == {"desc": "render"}


def test_notebook_without_widgets_gets_a_bar_that_redraws_a_handful_of_times(notebook_without_widgets):
    assert isinstance(progress.progress_bar(range(3), disable=True), progress.SparseTextBar)
    # First draw, final clear (two writes), nothing in between: the loop is faster than mininterval.
    assert redraws(progress.progress_bar) <= 3
    assert redraws(text_tqdm) > 10  # what a plain text bar stores in the notebook


def test_sparse_bar_redraws_at_most_every_quarter(notebook_without_widgets):
    # With the time limit lifted, only the item count limits the redraws.
    def eager(iterable, **kwargs):
        return progress.progress_bar(iterable, mininterval=0, **kwargs)

    assert redraws(eager) <= 1 + progress.SPARSE_UPDATES + 2


def test_sparse_settings():
    assert progress.sparse_settings(200)["miniters"] == 50
    assert progress.sparse_settings(3)["miniters"] == 1
    unknown = progress.sparse_settings(None)
    assert "miniters" not in unknown and unknown["mininterval"] == progress.SPARSE_MININTERVAL_S


def test_sparse_bar_keeps_the_postfix_for_its_next_draw(notebook_without_widgets):
    out = io.StringIO()
    bar = progress.progress_bar(total=2, file=out, mininterval=0)
    bar.set_postfix(objective="0.5")
    assert "objective" not in out.getvalue()  # no redraw of its own
    bar.update(2)
    bar.close()
    assert "objective=0.5" in out.getvalue()
