"""Render benchmarks on the default model (EfficientNet-Lite0). Prints ratios measured in one run.

    python benchmarks/bench_render.py [truncation|overhead|param|ratio|batching ...] [--quick]

* truncation: forward+backward to a mid layer with the hook engine's truncated forward vs the full model.
* overhead:   per-step cost of ``render`` vs a bare forward+backward of the same prefix (goal <= 1.5x).
* param:      pixel vs Fourier+decorrelated vs +transforms: activation and high-frequency energy.
* ratio:      16 channels of a mid layer, activation / best sample-crop activation at 128 and 512 steps.
* batching:   time per visualization with 8 units sharing a batch vs one unit alone.
* allocator:  prefix forward+backward per image, batch 8 and 64, with glibc's default allocator
              settings vs ``fv.tune_cpu_allocator()`` (each in its own process).

The benchmark process tunes the allocator as the command line does (``allocator`` aside).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List

import torch

import captum_fv as fv
from captum_fv import transforms as T
from captum_fv.addressing import resolve_layer
from captum_fv.hooks import Capture, model_guard

LAYER = "_blocks.8"
OUT = os.path.join(os.path.dirname(__file__), "out")
QUICK = "--quick" in sys.argv


def _time(fn: Callable[[], object], repeat: int = 7) -> float:
    return _time_pair(fn, fn, repeat)[0]


def _time_pair(a: Callable[[], object], b: Callable[[], object], repeat: int = 9) -> "tuple[float, float]":
    """Median times of ``a`` and ``b``, run alternately so machine load hits both alike."""
    a(), b()  # warm-up
    ta, tb = [], []
    for _ in range(repeat):
        for fn, times in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def _prefix(model: torch.nn.Module, depth: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The network up to ``_blocks.{depth}``, hand-written: the cheapest possible forward."""

    def run(x: torch.Tensor) -> torch.Tensor:
        x = model._act0(model._bn0(model._conv_stem((x * 255 - 127) / 128)))
        for block in model._blocks[: depth + 1]:
            x = block(x)
        return x

    return run


def truncation(model: torch.nn.Module, layers=("_blocks.3", "_blocks.8", "_blocks.13")) -> Dict[str, float]:
    x = torch.rand(8, 3, 224, 224)
    out = {}

    def step(capture: Capture, key: str) -> None:
        xi = x.clone().requires_grad_(True)
        capture(xi)[key].mean().backward()

    for layer in layers:
        ref = resolve_layer(model, layer)
        with (
            model_guard(model),
            Capture(model, model, [ref]) as cut,
            Capture(model, model, [ref], truncate=False) as full,
        ):
            t_cut, t_full = _time_pair(lambda: step(cut, ref.key), lambda: step(full, ref.key))
        print(
            f"[truncation] batch 8 @224px, fwd+bwd to {layer}: truncated {t_cut * 1e3:.0f} ms, "
            f"full model {t_full * 1e3:.0f} ms: ratio {t_cut / t_full:.2f} (speed-up {t_full / t_cut:.2f}x)"
        )
        out[layer] = t_cut / t_full
    return out


def overhead(model: torch.nn.Module, batch: int = 8, size: int = 128, steps: int = 20) -> Dict[str, float]:
    obj = fv.objectives.channel(LAYER, list(range(batch)))
    # A plain ascent step (rescue=False), and apart from it the rescue's redirected steps (the
    # first 16 of a render, about 1/16 of the demo's): ReLU gradients rerouted op by op.
    plain = dict(steps=steps, size=size, progress=False, thresholds=[], rescue=False)
    redirected = dict(plain, rescue=steps)
    fv.render(model, obj, **plain)  # warm-up
    per_step, per_redirected = (
        t / steps
        for t in _time_pair(
            lambda: fv.render(model, obj, **plain), lambda: fv.render(model, obj, **redirected), repeat=3
        )
    )
    seen = T.standard(size)(torch.rand(batch, 3, size, size), torch.Generator()).shape[-1]
    prefix = _prefix(model, int(LAYER.split(".")[1]))

    def bare() -> None:
        x = torch.rand(batch, 3, seen, seen, requires_grad=True)
        prefix(x)[:, 0].mean().backward()

    with model_guard(model):
        t_bare = _time(bare)
    print(
        f"[overhead] batch {batch} @{size}px (model sees {seen}px), {LAYER}: render step "
        f"{per_step * 1e3:.0f} ms vs bare prefix fwd+bwd {t_bare * 1e3:.0f} ms: "
        f"ratio {per_step / t_bare:.2f} (goal <= 1.5)"
    )
    print(
        f"[overhead] a redirected (rescue) step {per_redirected * 1e3:.0f} ms: {per_redirected / t_bare:.2f}x the bare "
        f"fwd+bwd, {per_redirected / per_step:.2f}x a plain step (16 of a render's steps)"
    )
    return {
        "render_step_ms": per_step * 1e3,
        "redirected_step_ms": per_redirected * 1e3,
        "bare_ms": t_bare * 1e3,
        "ratio": per_step / t_bare,
    }


def _channel_acts(model: torch.nn.Module, images: torch.Tensor, chans: List[int]) -> torch.Tensor:
    a = fv.activations(model, LAYER, images).flatten(2).mean(2)
    return a[torch.arange(len(chans)), chans]


def param(model: torch.nn.Module, chans=(3, 12, 40, 97), size: int = 128) -> None:
    chans = list(chans)
    steps = 128 if QUICK else 512
    marks = [t for t in (32, 128, 512) if t <= steps]
    settings = {
        "pixel, no transforms": dict(fft=False, decorrelate=False, transforms=[]),
        "fourier+decorrelated": dict(fft=True, decorrelate=True, transforms=[]),
        "fourier+decorr+transforms": dict(fft=True, decorrelate=True, transforms=None),
    }
    print(
        f"[param] {LAYER} channels {chans} @{size}px: mean activation | high-frequency energy "
        f"(fraction above half Nyquist; natural photos ~0.02-0.07)"
    )
    print(f"  {'setting':28s}" + "".join(f"{'step ' + str(m):>20s}" for m in marks))
    for name, kw in settings.items():
        p = fv.param.image(size, batch=len(chans), fft=kw["fft"], decorrelate=kw["decorrelate"])
        res = fv.render(
            model,
            fv.objectives.channel(LAYER, chans),
            param=p,
            steps=steps,
            transforms=kw["transforms"],
            thresholds=marks,
            progress=False,
        )
        cells = []
        for m in marks:
            snap = res.snapshots[m]
            act = _channel_acts(model, snap, chans).mean().item()
            hf = fv.metrics.high_frequency_energy(snap).mean().item()
            cells.append(f"{act:8.1f} | {hf:.3f}")
        print(f"  {name:28s}" + "".join(f"{c:>20s}" for c in cells))
        _save(res.images, f"param_{name.split(',')[0].replace('+', '_').replace(' ', '')}.png")


def ratio(model: torch.nn.Module, size: int = 128, layers=(LAYER, "_blocks.12")) -> Dict[str, float]:
    ds = fv.data.sample_images(size=size, crops=32)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    steps = 128 if QUICK else 512
    out = {}
    for layer in layers:
        acts = fv.activations(model, layer, x).flatten(2).mean(2)
        n_ch = acts.shape[1]
        chans = list(range(0, n_ch, n_ch // 16))[:16]  # evenly spaced, not hand-picked
        best = acts[:, chans].max(0).values
        res = fv.render(
            model, fv.objectives.channel(layer, chans), steps=steps, size=size, thresholds=[128], progress=False
        )
        for m in sorted({128, steps}):
            got = fv.activations(model, layer, res.snapshots[m]).flatten(2).mean(2)
            r = got[torch.arange(len(chans)), chans] / best
            out[f"{layer}@{m}"] = r
            print(
                f"[ratio] {layer} {len(chans)} channels @{size}px, {m} steps, activation / best of "
                f"{len(ds)} sample crops: min {r.min():.2f}x, median {r.median():.2f}x "
                f"(goal at 128: min >= 3, median >= 6)"
            )
            print("        per channel: " + ", ".join(f"{c}:{v:.1f}" for c, v in zip(chans, r.tolist())))
        _save(res.images, f"ratio_{layer}.png")
    return {k: v.median().item() for k, v in out.items()}


def batching(model: torch.nn.Module, size: int = 128, steps: int = 16) -> Dict[str, float]:
    viz = fv.NeuronVisualization(model, LAYER)
    kw = dict(size=size, steps=steps, progress=False, thresholds=[], rescue=False)  # plain steps, as overhead
    viz.visualize(0, **kw)  # warm-up
    t = time.perf_counter()
    viz.visualize(0, **kw)
    one = time.perf_counter() - t
    t = time.perf_counter()
    viz.visualize(list(range(8)), **kw)
    eight = (time.perf_counter() - t) / 8
    dev = "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name()
    print(
        f"[batching] {dev}, {steps} steps @{size}px: one unit alone {one:.2f} s/unit, 8 units in "
        f"one batch {eight:.2f} s/unit: {one / eight:.2f}x faster per unit"
    )
    return {"alone_s": one, "batched_s": eight, "speedup": one / eight}


def allocator(model: torch.nn.Module, layer: str = LAYER) -> Dict[str, float]:
    out = {}
    runs = {
        mode: subprocess.run(
            [sys.executable, __file__, "_per_image", mode], check=True, capture_output=True, text=True
        ).stdout.split()
        for mode in ("default", "tuned")
    }
    for key, default, tuned in zip(runs["default"][::2], runs["default"][1::2], runs["tuned"][1::2]):
        out[key] = float(default) / float(tuned)
        print(
            f"[allocator] {key}, prefix fwd+bwd to {layer}: glibc default {float(default):.1f} ms/image, "
            f"tuned {float(tuned):.1f} ms/image: {out[key]:.2f}x faster"
        )
    return out


def _per_image(model: torch.nn.Module, mode: str) -> None:
    """Child of ``allocator``: ms per image of a prefix forward+backward, printed as key value."""
    if mode == "tuned":
        assert fv.tune_cpu_allocator(), "allocator tuning does not apply on this system"
    prefix = _prefix(model, int(LAYER.split(".")[1]))
    for size in (128, 224):
        for batch in (8, 64):

            def step() -> None:
                x = torch.rand(batch, 3, size, size, requires_grad=True)
                prefix(x)[:, 0].mean().backward()

            with model_guard(model):
                t = _time(step, repeat=3 if QUICK else 5)
            print(f"batch_{batch}@{size}px {t / batch * 1e3:.3f}")


def _save(images: torch.Tensor, name: str) -> None:
    import torchvision

    os.makedirs(OUT, exist_ok=True)
    torchvision.utils.save_image(images, os.path.join(OUT, name), nrow=8)


def main(argv: List[str]) -> None:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    names = [a for a in argv if not a.startswith("--")] or [
        "truncation",
        "overhead",
        "batching",
        "allocator",
        "param",
        "ratio",
    ]
    model = fv.models.efficientnet_lite0()
    if names[0] == "_per_image":
        return _per_image(model, names[1])
    fv.tune_cpu_allocator()
    for name in names:
        globals()[name](model)


if __name__ == "__main__":
    main(sys.argv[1:])
