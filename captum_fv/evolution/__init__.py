"""How features evolve: the same units across training checkpoints (or before and after
fine-tuning), side by side, with numbers that say how much each changed."""

from .checkpoints import Checkpoint, as_checkpoints
from .core import EvolvedUnit, FeatureEvolution
from .measures import SETTLED, Measures, measure

__all__ = ["FeatureEvolution", "EvolvedUnit", "Checkpoint", "as_checkpoints", "Measures", "measure", "SETTLED"]
