"""Benchmark: dataset mining vs plain inference, and Integrated Gradients vs bare passes.

Plain script; prints figures measured in this run and never asserts times.

1. Mining throughput (images/s) of every channel of ``_blocks.8`` of EfficientNet-Lite0 over
   ``sample_images(size=128, crops=32)`` vs plain no-grad inference of the full model over the
   same data and batch size (goal: ratio >= 0.8). Measured twice: on images already in memory
   (model cost only) and through the Dataset (PIL crop + resize included in both), without
   loader workers; then mining with ``collect``'s default workers against none.
2. Integrated Gradients cost for one example with n_steps=32 vs 32 bare forward+backward passes
   of the full model at the same size, and vs one batched forward+backward of 32 images.

    python benchmarks/bench_mining.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable, List, Sequence

import torch
from torch.utils.data import DataLoader

import captum_fv as fv
from captum_fv.attribution import attribute
from captum_fv.mining import DatasetExamples

LAYER, SIZE, CROPS, BATCH, STEPS = "_blocks.8", 128, 32, 64, 32


def best_of(fns: Sequence[Callable[[], object]], repeats: int) -> List[float]:
    """Fastest of ``repeats`` timed runs of each, after one warm-up; runs are interleaved so
    that a busy spell on the machine hits every contender alike (noise only ever adds time)."""
    for fn in fns:
        fn()
    times: List[List[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [min(ts) for ts in times]


def plain_inference(model: torch.nn.Module, data, batch_size: int) -> None:
    loader = data.split(batch_size) if torch.is_tensor(data) else DataLoader(data, batch_size=batch_size)
    with torch.no_grad():
        for batch in loader:
            model(batch[0] if isinstance(batch, (list, tuple)) else batch)


def bench_mining(model: torch.nn.Module, repeats: int) -> None:
    ds = fv.data.sample_images(size=SIZE, crops=CROPS)
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    n = len(ds)
    miner = DatasetExamples(model, LAYER)
    print(f"mining: all channels of {LAYER}, {n} images of {SIZE} px, batch {BATCH}, k=9")
    for label, data in (("images in memory", images), ("through the Dataset", ds)):
        t_plain, t_mine = best_of(
            [
                lambda: plain_inference(model, data, BATCH),
                # no loader workers: the same reading as plain inference (and as before they existed)
                lambda: miner.collect(data, k=9, batch_size=BATCH, progress=False, num_workers=0),
            ],
            repeats,
        )
        print(
            f"  {label:20s} plain inference {n / t_plain:7.1f} img/s   mining {n / t_mine:7.1f} img/s"
            f"   ratio {t_plain / t_mine:.2f}"
        )
    t_none, t_default = best_of(
        [
            lambda: miner.collect(ds, k=9, batch_size=BATCH, progress=False, num_workers=0),
            lambda: miner.collect(ds, k=9, batch_size=BATCH, progress=False),
        ],
        repeats,
    )
    print(
        f"  through the Dataset, collect's default loader workers: mining {n / t_default:7.1f} img/s"
        f"   time ratio to num_workers=0 {t_default / t_none:.2f}"
    )


def bench_integrated_gradients(model: torch.nn.Module, repeats: int) -> None:
    x = fv.data.sample_images(size=SIZE)[1][0][None]  # one photo
    frozen = [p.requires_grad_(False) for p in model.parameters()]  # as during attribute()

    def fwd_bwd(batch: torch.Tensor) -> None:
        inp = batch.clone().requires_grad_()
        model(inp).sum().backward()

    t_ig, t_steps, t_batch = best_of(
        [
            lambda: attribute(model, LAYER, x, 12, n_steps=STEPS, tolerance=None),  # one Captum call
            lambda: [fwd_bwd(x) for _ in range(STEPS)],
            lambda: fwd_bwd(x.expand(STEPS, -1, -1, -1)),
        ],
        repeats,
    )
    for p in frozen:
        p.requires_grad_(True)
    print(f"integrated gradients: one {SIZE} px example, n_steps={STEPS}, unit {LAYER} channel 12")
    print(f"  IG {t_ig * 1e3:8.1f} ms   {STEPS} x bare fwd+bwd {t_steps * 1e3:8.1f} ms   ratio {t_ig / t_steps:.2f}")
    print(f"  one batched fwd+bwd of {STEPS} images {t_batch * 1e3:8.1f} ms   ratio {t_ig / t_batch:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fv.tune_cpu_allocator()  # as the command line does
    model = fv.models.efficientnet_lite0()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    bench_mining(model, args.repeats)
    bench_integrated_gradients(model, args.repeats)


if __name__ == "__main__":
    main()
