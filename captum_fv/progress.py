"""Progress bars that suit where the code runs.

* a terminal (or any process that is not a Jupyter kernel): tqdm's text bar;
* a Jupyter notebook with ipywidgets: tqdm's widget bar;
* a Jupyter notebook without ipywidgets: a text bar that redraws a handful of times. A notebook
  stores every redraw of a text bar in the cell's output, so tqdm's usual ten redraws a second
  would leave hundreds of lines in the saved notebook.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from typing import Any, Dict, Iterable, Optional

from tqdm.std import TqdmWarning
from tqdm.std import tqdm as text_tqdm

__all__ = ["progress_bar", "in_notebook", "SparseTextBar", "sparse_settings"]

#: In a notebook without ipywidgets, redraw at most this many times between the first and the
#: last draw, and at most once every SPARSE_MININTERVAL_S seconds.
SPARSE_UPDATES = 4
SPARSE_MININTERVAL_S = 10.0

# tqdm.auto (imported by Captum) warns "IProgress not found" in a notebook without ipywidgets.
# The bars here do not need ipywidgets, so the warning is noise; it is emitted once, when
# tqdm.auto is first imported, hence a filter rather than a catch_warnings block.
warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)


def in_notebook() -> bool:
    """True inside a Jupyter kernel whose front end renders rich output (not qtconsole/Spyder)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if type(shell).__name__ != "ZMQInteractiveShell":
        return False
    # Same exclusions as tqdm.autonotebook: these consoles render text bars, not widgets.
    return not any(key == "QT_API" or key.startswith("SPYDER") for key in os.environ)


def sparse_settings(total: Optional[float]) -> Dict[str, Any]:
    """tqdm settings that redraw at most SPARSE_UPDATES times (if ``total`` is known) and at most
    once every SPARSE_MININTERVAL_S seconds."""
    settings: Dict[str, Any] = {
        "mininterval": SPARSE_MININTERVAL_S,
        # tqdm's monitor thread forces a redraw every `maxinterval` seconds: turn it off.
        "maxinterval": math.inf,
    }
    if total:
        settings["miniters"] = max(1, math.ceil(total / SPARSE_UPDATES))
    return settings


class SparseTextBar(text_tqdm):
    """A text bar whose postfix and description changes wait for its next (rare) redraw."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        super().set_postfix_str(s, refresh=False)

    def set_description(self, desc: Optional[str] = None, refresh: bool = True) -> None:
        super().set_description(desc, refresh=False)

    def set_description_str(self, desc: Optional[str] = None, refresh: bool = True) -> None:
        super().set_description_str(desc, refresh=False)


def _total(iterable: Optional[Iterable], kwargs: Dict[str, Any]) -> Optional[float]:
    if kwargs.get("total") is not None:
        return kwargs["total"]
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def progress_bar(iterable: Optional[Iterable] = None, **tqdm_kwargs: Any) -> text_tqdm:
    """A tqdm bar over ``iterable`` (or a manual one, with ``total=``) that suits where it runs.

    Takes tqdm's arguments (``desc``, ``total``, ``disable``, ``leave``, ...).
    """
    if not in_notebook():
        return text_tqdm(iterable, **tqdm_kwargs)
    # Imported here, not at the top: it imports IPython and ipywidgets, which a terminal run
    # does not need.
    from tqdm import notebook

    if notebook.IProgress is not None:
        return notebook.tqdm(iterable, **tqdm_kwargs)
    settings = {**sparse_settings(_total(iterable, tqdm_kwargs)), **tqdm_kwargs}
    return SparseTextBar(iterable, **settings)
