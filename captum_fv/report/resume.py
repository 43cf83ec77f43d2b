"""What ``--resume`` keeps: a unit on disk is kept only when intact and made under the same
fingerprint; every other unit is redone, and :meth:`ResumePlan.summary` says why in one line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

from .writer import unit_status


@dataclass
class ResumePlan:
    """What ``run(..., resume=True)`` found on disk: the units kept, and why each other one is redone."""

    kept: List[str]
    redo: Dict[str, str]  # unit name -> "missing", "damaged", "weights changed", ...

    def summary(self) -> str:
        """One line, e.g. ``resume: kept 4 of 6 units, redoing 2 (weights changed: 2)``."""
        total = len(self.kept) + len(self.redo)
        if not self.redo:
            return f"resume: kept all {total} units"
        reasons: Dict[str, int] = {}
        for r in self.redo.values():
            reasons[r] = reasons.get(r, 0) + 1
        why = ", ".join(f"{r}: {n}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        return f"resume: kept {len(self.kept)} of {total} units, redoing {len(self.redo)} ({why})"


def plan(out_dir: Path, names: Sequence[str], fingerprint: Dict[str, str]) -> ResumePlan:
    """Which of ``names`` can be kept from ``out_dir``, and why each other one is redone."""
    kept, redo = [], {}
    for name in dict.fromkeys(names):
        status = unit_status(out_dir, name, fingerprint)
        if status.record is not None:
            kept.append(name)
        else:
            redo[name] = status.reason
    return ResumePlan(kept, redo)


def redo_all(names: Sequence[str]) -> ResumePlan:
    """The plan of a run without ``resume``: every unit is (re)built."""
    return ResumePlan([], {n: "not resuming" for n in dict.fromkeys(names)})
