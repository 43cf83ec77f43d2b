"""Dead-unit rescue: units that are flat at the starting image still get a gradient.

A unit behind a ReLU (or ReLU6) whose input is on a flat side everywhere gets exactly zero
gradient, so plain ascent never moves it. For the first steps of a render, :func:`redirected`
lets the backward pass through a flat ReLU where the gradient would push its input back toward
the active region (Lucid's ``redirected_relu``): for ReLU where x <= 0 and the step would raise
x; for ReLU6 also where x >= 6 and the step would lower x. As in Lucid this happens per batch
row, and only in rows where the ordinary gradient through that ReLU is zero everywhere, so a
slot whose gradient already gets through keeps the ordinary, bit-identical gradient.

Covered (while the redirect is active, through a :class:`torch.overrides.TorchFunctionMode`):
``nn.ReLU``, ``nn.ReLU6``, ``nn.Hardtanh(0, 6)`` (their forward calls the functional form),
``F.relu``, ``F.relu_``, ``torch.relu``, ``torch.relu_``, ``Tensor.relu``, ``Tensor.relu_``,
``F.relu6``, ``F.hardtanh(x, 0, 6)``, each also ``inplace=True``. Not covered: ``clamp``-style
ReLUs (``x.clamp(min=0)``, ``torch.maximum``), other activations with flat sides, TorchScript or
compiled modules, and C++ code that does not go through Python's torch functions. The model
itself is never modified: nothing to restore, whatever ends the block.

:class:`Rescue` drives a render: redirected phases, per-slot dead detection, bounded retries
from a new random start, and the slots still dead at the end.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

#: Steps of redirected gradient at the start of a render (and after each retry).
REDIRECT_STEPS = 16
#: Further redirected phases for a slot still dead after one (see :class:`Rescue`).
RETRIES = 3
_PROBES = 3  # binary-noise images a zero-gradient objective is scored on (besides black, white)


@dataclass(frozen=True)
class RescueConfig:
    """How a render rescues dead slots: ``steps`` redirected steps, ``retries`` more redirected
    phases for a slot still dead after them (restarted from new noise if it did not move), ``warn``
    once about the slots still dead at the end (``steps=0``: no redirection and no retry, dead
    slots are only found and reported, which is what ``rescue=False`` means);
    ``slots`` the slots to watch, all read by the objective (None: every slot, and then one whose
    value never changes with the input is taken for a slot the objective ignores, not a dead one;
    name them to leave out e.g. a negative optimum, already at its floor)."""

    steps: int = REDIRECT_STEPS
    retries: int = RETRIES
    warn: bool = True
    slots: Optional[Tuple[int, ...]] = None

    @classmethod
    def of(cls, rescue: Any) -> "RescueConfig":
        """``True``/None: the defaults; ``False`` or 0: plain gradients throughout, a slot that
        gets none still reported (never silently left blank); an int: that many redirected steps."""
        if isinstance(rescue, RescueConfig):
            return rescue
        if rescue is None or rescue is True:
            return cls()
        if rescue is False:
            return cls(steps=0)  # steps=0: found and reported, never redirected or retried
        if isinstance(rescue, int) and rescue >= 0:
            return cls(steps=rescue)
        raise TypeError(f"rescue must be a bool, an int >= 0 or a RescueConfig, got {rescue!r}")


class _Redirected(torch.autograd.Function):
    """A ReLU (``upper`` None) or ReLU6 (``upper`` 6) whose backward redirects flat rows."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, run: Callable[[], torch.Tensor], upper: Optional[float], inplace: bool
    ) -> torch.Tensor:
        y = run()  # the original op, so forward values are bit-identical
        if inplace:
            ctx.mark_dirty(x)
        ctx.save_for_backward(y)
        ctx.upper = upper
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[Optional[torch.Tensor], None, None, None]:
        (y,) = ctx.saved_tensors
        return redirect_grad(grad, y, ctx.upper), None, None, None


def redirect_grad(grad: torch.Tensor, y: torch.Tensor, upper: Optional[float]) -> torch.Tensor:
    """The gradient through a ReLU/ReLU6 with output ``y``: the ordinary one in rows (first dim)
    where it is nonzero somewhere, else also where ``grad`` points back to the active region.
    ``grad`` is of a loss being minimized: a step moves the input by ``-grad``."""
    zero = grad.new_zeros(())
    low = y <= 0
    high = y >= upper if upper is not None else None
    flat = low if high is None else low | high
    ordinary = torch.where(flat, zero, grad)
    live = ordinary.ne(0) if grad.dim() < 2 else ordinary.flatten(1).ne(0).any(1)
    if bool(live.all()):  # the usual case after the first steps: no row needs the redirected gradient
        return ordinary
    toward = low & (grad < 0) if high is None else (low & (grad < 0)) | (high & (grad > 0))
    redirected = torch.where(flat & ~toward, zero, grad)
    if grad.dim() < 2:
        return ordinary if bool(live.any()) else redirected
    return torch.where(live.view(-1, *([1] * (grad.dim() - 1))), ordinary, redirected)


_RELU = {F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}
_INPLACE = {torch.relu_, torch.Tensor.relu_}


def _arg(args: Sequence[Any], kwargs: Dict[str, Any], i: int, name: str, default: Any) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _match(func: Any, args: Sequence[Any], kwargs: Dict[str, Any]) -> Optional[Tuple[Optional[float], bool]]:
    """``(upper, inplace)`` when ``func(*args, **kwargs)`` is a ReLU or ReLU6, else None."""
    if not args or not torch.is_tensor(args[0]) or not args[0].is_floating_point():
        return None
    if func in _RELU:
        return None, func in _INPLACE or bool(_arg(args, kwargs, 1, "inplace", False))
    if func is F.relu6:
        return 6.0, bool(_arg(args, kwargs, 1, "inplace", False))
    bounds = (_arg(args, kwargs, 1, "min_val", -1.0), _arg(args, kwargs, 2, "max_val", 1.0))
    if func is F.hardtanh and bounds == (0.0, 6.0):
        return 6.0, bool(_arg(args, kwargs, 3, "inplace", False))
    return None


class _RedirectMode(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        hit = _match(func, args, kwargs)
        if hit is None or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        upper, inplace = hit
        # Inside __torch_function__ this mode is off, so ``func`` runs as the plain op.
        return _Redirected.apply(args[0], lambda: func(*args, **kwargs), upper, inplace)


@contextlib.contextmanager
def redirected(enabled: bool = True) -> Iterator[None]:
    """Within the block, ReLUs and ReLU6s (module, functional, in-place) redirect gradients."""
    if not enabled:
        yield
        return
    with _RedirectMode():
        yield


def slot_rows(params: Sequence[torch.Tensor], batch: int) -> List[torch.Tensor]:
    """The parameter tensors with one row per slot (the others are shared between slots)."""
    return [p for p in params if p.dim() >= 1 and p.shape[0] == batch]


def zero_grad_slots(params: Sequence[torch.Tensor], batch: int) -> Optional[torch.Tensor]:
    """(batch,) bool: slots whose per-slot parameters got exactly zero gradient; None when no
    parameter has one row per slot (nothing to tell the slots apart by)."""
    rows = slot_rows(params, batch)
    if not rows:
        return None
    zero = torch.ones(batch, dtype=torch.bool)
    for p in rows:
        if p.grad is not None:
            zero &= ~p.grad.reshape(batch, -1).ne(0).any(1).cpu()
    return zero


@torch.no_grad()
def reinit_slots(
    params: Sequence[torch.Tensor],
    opt: torch.optim.Optimizer,
    slots: Sequence[int],
    batch: int,
    generator: torch.Generator,
    gain: float,
) -> None:
    """Draw the slots' parameters afresh (Gaussian, ``gain`` times their current spread) and clear
    their optimizer state, so they restart from another random image."""
    for p in slot_rows(params, batch):
        for s in slots:
            sd = float(p[s].float().std()) if p[s].numel() > 1 else 0.0
            noise = torch.randn(p[s].shape, generator=generator, dtype=torch.float32)
            p[s] = (noise * gain * (sd if sd > 0 else 0.01)).to(p.device, p.dtype)
        for v in opt.state.get(p, {}).values():
            if torch.is_tensor(v) and v.shape == p.shape:
                v[list(slots)] = 0


def probe_images(like: torch.Tensor, generator: torch.Generator, probes: int = _PROBES) -> List[torch.Tensor]:
    """Images of ``like``'s shape far from a grey start: black, white, then binary noise (full
    contrast, so a unit that needs a bright or dark patch sees one)."""
    out = [torch.zeros(like.shape), torch.ones(like.shape)]
    out += [(torch.rand(like.shape, generator=generator) > 0.5).float() for _ in range(probes)]
    return [x.to(like.device, like.dtype) for x in out]


@torch.no_grad()
def varying_slots(
    score: Callable[[torch.Tensor], torch.Tensor], like: torch.Tensor, generator: torch.Generator, probes: int = _PROBES
) -> torch.Tensor:
    """(batch,) bool: slots whose value under ``score`` (images -> per-slot values) changes at
    all between ``like`` and the :func:`probe_images`."""
    first = score(like)
    varies = torch.zeros(first.shape, dtype=torch.bool, device=first.device)
    for x in probe_images(like, generator, probes):
        varies |= score(x).ne(first)
    return varies.cpu()


def depends_on_input(
    score: Callable[[torch.Tensor], torch.Tensor], like: torch.Tensor, generator: torch.Generator, probes: int = _PROBES
) -> bool:
    """Whether the objective's value changes at all on :func:`probe_images`: a zero gradient
    alone does not tell a flat start from an objective that ignores the input."""
    return bool(varying_slots(score, like, generator, probes).any())


class Rescue:
    """Per render: step 0 is a plain probe, and only if a watched slot gets exactly zero gradient
    there do redirected phases follow (a render whose slots are all live pays nothing: the
    redirected backward costs 1.69x a plain one). Each phase is ``config.steps`` steps, followed
    by one plain check step. A watched slot whose plain gradient is still exactly zero there (and whose value does
    change with the input) gets another redirected phase, from a fresh random start if the
    redirected gradient did not move it either, up to ``config.retries`` times; after that it is
    dead (``.dead``)."""

    def __init__(self, config: Optional[RescueConfig], batch: int, steps: int, seed: int) -> None:
        self.config, self.batch, self.steps = config, batch, steps
        self.probing = config is not None  # step 0: plain, tells whether any slot is flat
        self.phase_start = 1
        self.phase_end = max(0, min(1 + config.steps, steps - 1)) if config else 0  # the check step
        watched = config.slots if config and config.slots is not None else range(batch)
        self.watch = {s for s in watched if 0 <= s < batch}
        self.attempts = [0] * batch
        self.zero_all = torch.ones(batch, dtype=torch.bool)
        self.dead: List[int] = []
        self.at_check: Dict[int, float] = {}  # a dead slot's value when it was found dead
        self.generator = torch.Generator().manual_seed(seed + 7919)  # never the global RNG

    def active(self, step: int) -> bool:
        """Whether ``step`` redirects gradients."""
        return self.phase_start <= step < self.phase_end

    def after_step(
        self,
        step: int,
        params: Sequence[torch.Tensor],
        opt: torch.optim.Optimizer,
        score: Callable[[torch.Tensor], torch.Tensor],
        like: torch.Tensor,
    ) -> None:
        """Call after each optimizer step with the step's gradients still in ``params``;
        ``score`` (images -> per-slot values) and ``like`` tell slots the objective ignores."""
        if self.config is None or step > self.phase_end or not self.watch:
            return
        zero = zero_grad_slots(params, self.batch)
        if zero is None:
            return
        if self.probing:
            self.probing = False
            if not any(bool(zero[s]) for s in self.watch):
                self.phase_end = 0  # every slot has a gradient: no redirected phase
            return
        if step < self.phase_end:
            self.zero_all &= zero
            return
        still = [s for s in sorted(self.watch) if bool(zero[s])]
        varies = varying_slots(score, like, self.generator) if still else torch.zeros(0)
        # A constant slot is not retried: no start helps. Reported only if the caller named the
        # slots (all read by the objective); otherwise it may be a slot the objective ignores.
        constant = [s for s in still if not bool(varies[s])]
        still = [s for s in still if bool(varies[s])]
        room = step + 1 + self.config.steps < self.steps  # another phase and its check fit
        again = [s for s in still if room and self.config.steps and self.attempts[s] < self.config.retries]
        named = constant if self.config.slots is not None else []
        self.dead = sorted(set(self.dead) | (set(still) - set(again)) | set(named))
        if self.dead:
            with torch.no_grad():
                now = score(like).float().cpu()
            self.at_check.update({s: float(now[s]) for s in self.dead if s not in self.at_check})
        self.watch = set(again)
        restart = [s for s in again if bool(self.zero_all[s])]  # redirection did not move them
        for s in again:
            self.attempts[s] += 1
        if restart:
            gain = 10.0 ** max(self.attempts[s] for s in restart)  # further from grey each time
            reinit_slots(params, opt, restart, self.batch, self.generator, gain)
        if again:
            self.phase_end = step + 1 + self.config.steps
            self.zero_all = torch.ones(self.batch, dtype=torch.bool)

    def settle(self, final: torch.Tensor) -> None:
        """Keep as dead only the slots whose final value is still the one they were found dead
        with (momentum may carry a slot into the active region after its last check)."""
        self.dead = [s for s in self.dead if float(final[s]) == self.at_check.get(s, float(final[s]))]

    def message(self, name: str) -> str:
        if self.config is not None and self.config.steps == 0:
            return (
                f"{len(self.dead)} of {self.batch} slots of {name} got exactly zero gradient "
                f"(slots {self.dead}, see RenderResult.dead_slots) and stayed at their start: "
                "rescue is off; pass rescue=True to redirect ReLU gradients"
            )
        phases = 1 + max((self.attempts[s] for s in self.dead), default=0)
        return (
            f"{len(self.dead)} of {self.batch} slots of {name} never got a gradient: slots "
            f"{self.dead} still had none after {phases} phase(s) of redirected ReLU gradients "
            "(see RenderResult.dead_slots)"
        )
