"""Render precision and memory format: units per minute for a fixed 16-unit subset of ``_blocks.8``
of the default model in each configuration, measured in one run, with the activation each reaches.

    python benchmarks/bench_precision.py [--device cpu|cuda] [--quick] [--repeat N]

Configurations: fp32 (the default), bf16 autocast, channels-last inputs, both; and the same two
channels-last rows with the model's weights converted too (on a copy: ``render`` never converts
the user's model, so this measures whether converting your own model is worth it).

Full settings are the demo's (``captum_fv.cli``): size 128, 256 steps, 4 facets and a negative
optimum per unit, at most 64 images per batch (16 units: batches of 10 and 6 units), the rescue's
16 redirected steps. ``--quick`` (for a CPU): size 64, 32 steps, 1 facet, 2 redirected steps (the
demo's share of redirected steps, 1/16, whose backward costs more). ``--repeat``: runs of every
configuration, interleaved, medians taken (a shared CPU is noisy). On a CPU, ``cpu s`` is the
process's CPU time, steadier than wall time on a loaded machine with ``--threads 1``.
``act/fp32``: the positive optima's activation (measured in float32) summed over the units,
relative to fp32's; ``min``: the lowest per-unit ratio.
On CUDA, fp32 convolutions may already use TF32 (``torch.backends.cudnn.allow_tf32``, printed).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from typing import Dict, List

import torch

import captum_fv as fv

LAYER = "_blocks.8"
UNITS = list(range(0, 112, 7))  # 16 channels evenly spaced over the layer's 112, not hand-picked
OUT = os.path.join(os.path.dirname(__file__), "out")
CONFIGS = {  # name: (autocast, channels_last, model converted to channels-last too)
    "fp32": (None, False, False),
    "bf16": ("bf16", False, False),
    "channels_last": (None, True, False),
    "bf16+channels_last": ("bf16", True, False),
    "channels_last, model too": (None, True, True),
    "bf16+channels_last, model too": ("bf16", True, True),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run(model: torch.nn.Module, cfg: tuple, kw: dict, device: torch.device) -> "tuple[float, float, List]":
    autocast, channels_last, _ = cfg
    viz = fv.NeuronVisualization(model, LAYER)
    _sync(device)
    t, c = time.perf_counter(), time.process_time()
    vis = viz.visualize(UNITS, autocast=autocast, channels_last=channels_last, **kw)
    _sync(device)
    return time.perf_counter() - t, time.process_time() - c, vis


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small settings for a CPU: size 64, 32 steps, 1 facet")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved runs per configuration (median)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "2")))
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
        fv.tune_cpu_allocator()  # as the command line does
    size, steps, facets = (64, 32, 1) if args.quick else (128, 256, 4)
    rescue = max(1, 16 * steps // 256)  # the demo's share of redirected steps
    kw = dict(size=size, steps=steps, facets=facets, negative=True, max_batch=64, progress=False, thresholds=[])
    kw.update(rescue=rescue)
    base = fv.models.efficientnet_lite0().to(device)
    converted = copy.deepcopy(base).to(memory_format=torch.channels_last)
    models = {False: base, True: converted}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    images = len(UNITS) * (2 + facets)
    print(
        f"[precision] {device.type} ({name}), torch {torch.__version__}, {LAYER} units {UNITS[0]}..{UNITS[-1]} "
        f"step {UNITS[1] - UNITS[0]} ({len(UNITS)}), size {size}, {steps} steps, {facets} facets + negative "
        f"({images} images, batches of <= 64), {rescue} redirected steps, repeat {args.repeat}"
        + (f", cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}" if device.type == "cuda" else "")
    )
    warm = dict(kw, steps=2)
    for cfg in CONFIGS.values():  # kernels chosen, caches filled: not part of the timing
        autocast, cl, model_cl = cfg
        fv.NeuronVisualization(models[model_cl], LAYER).visualize(UNITS, autocast=autocast, channels_last=cl, **warm)
    times: Dict[str, List[float]] = {k: [] for k in CONFIGS}
    cpu: Dict[str, List[float]] = {k: [] for k in CONFIGS}
    acts: Dict[str, torch.Tensor] = {}
    for _ in range(args.repeat):
        for label, cfg in CONFIGS.items():
            seconds, cpu_seconds, vis = _run(models[cfg[2]], cfg, kw, device)
            times[label].append(seconds)
            cpu[label].append(cpu_seconds)
            acts[label] = torch.stack([v.activation["positive"][0] for v in vis])
            if label in ("fp32", "bf16"):
                _save(torch.cat([v.positive for v in vis]), f"precision_{label}.png")
    ref_t, ref_a = statistics.median(times["fp32"]), acts["fp32"]
    on_cpu = device.type == "cpu"
    ref_c = statistics.median(cpu["fp32"])
    head = f"{'cpu s':>8s}{'cpu x':>7s}" if on_cpu else ""
    print(f"  {'config':32s}{'s':>8s}{'units/min':>11s}{'speed-up':>10s}{head}{'act/fp32':>10s}{'min':>7s}")
    for label in CONFIGS:
        t, c = statistics.median(times[label]), statistics.median(cpu[label])
        ratio = acts[label] / ref_a
        cells = f"{c:8.1f}{ref_c / c:6.2f}x" if on_cpu else ""
        print(
            f"  {label:32s}{t:8.1f}{len(UNITS) * 60 / t:11.1f}{ref_t / t:9.2f}x{cells}"
            f"{float(acts[label].sum() / ref_a.sum()):10.3f}{float(ratio.min()):7.2f}"
        )
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in base.parameters())  # never converted


def _save(images: torch.Tensor, name: str) -> None:
    import torchvision

    os.makedirs(OUT, exist_ok=True)
    torchvision.utils.save_image(images, os.path.join(OUT, name), nrow=8)


if __name__ == "__main__":
    main()
