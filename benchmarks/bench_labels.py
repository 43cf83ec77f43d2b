"""Cost of automatic labels (captum_fv.labels) against the report work they sit beside.

Times, in one run on the default model: ``output_classes`` for 16 channels of a layer, each on
its own 32 top examples (one clean forward, then a tail forward per unit and example); the same
examples through one plain full forward (for scale); the optimization of one report unit at the
report's default settings (a batch of 2 + facets images, ``steps`` forward+backward passes,
estimated from ``--probe-steps`` of them), or, with ``--report``, a whole report unit built by
``NeuronReport`` (mining, optimization, attribution). Prints the ratio of the labels' cost per
unit to a report unit's cost, and what the labels say for the first units with their top
examples' names.

    python benchmarks/bench_labels.py                   # _blocks.8, 16 units x 32 examples
    python benchmarks/bench_labels.py --layer _blocks.15 --report
"""

from __future__ import annotations

import argparse
import time

import torch

import captum_fv as fv
from captum_fv.report import NeuronReport


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layer", default="_blocks.8")
    p.add_argument("--units", type=int, default=16)
    p.add_argument("--k", type=int, default=32, help="top examples per unit")
    p.add_argument("--size", type=int, default=128, help="image size (the report's default)")
    p.add_argument("--steps", type=int, default=256, help="optimization steps of a report unit")
    p.add_argument("--facets", type=int, default=4)
    p.add_argument("--probe-steps", type=int, default=16, help="steps timed to estimate the optimization")
    p.add_argument("--report", action="store_true", help="also build one whole report unit")
    p.add_argument("--show", type=int, default=8, help="units whose labels are printed")
    args = p.parse_args()

    model = fv.models.efficientnet_lite0()
    ds = fv.data.sample_images(size=args.size, crops=32)
    units = list(range(args.units))
    ex = fv.DatasetExamples(model, args.layer).collect(ds, k=args.k, units=units, progress=False)
    tops = [ex.images(u) for u in units]

    t = time.perf_counter()
    labs = fv.labels.output_classes(model, args.layer, tops, units)
    t_labels = time.perf_counter() - t

    with torch.no_grad():
        t = time.perf_counter()
        for x in torch.cat(tops).split(64):
            model(x)
        t_forward = time.perf_counter() - t

    viz = fv.NeuronVisualization(model, args.layer)
    t = time.perf_counter()
    viz.visualize(0, size=args.size, steps=args.probe_steps, facets=args.facets, negative=True, progress=False)
    t_opt = (time.perf_counter() - t) * args.steps / args.probe_steps

    n = args.units * args.k
    per_unit = t_labels / args.units
    print(f"layer {args.layer}, {args.units} units x {args.k} top examples at {args.size} px ({n} rows)")
    print(f"output_classes:                {t_labels:8.2f} s  ({per_unit:.3f} s per unit)")
    print(f"plain full forward, same rows: {t_forward:8.2f} s  (labels / forward = {t_labels / t_forward:.2f})")
    print(
        f"one unit's optimization:       {t_opt:8.2f} s  (estimated from {args.probe_steps} of {args.steps} steps, "
        f"{2 + args.facets} images)"
    )
    print(f"ratio labels per unit / optimization of a unit: {per_unit / t_opt:.4f}")
    if args.report:
        rep = NeuronReport(model, args.layer, ds, size=args.size, steps=args.steps, facets=args.facets, progress=False)
        t = time.perf_counter()
        rep.build([0])
        t_unit = time.perf_counter() - t
        print(f"one whole report unit:         {t_unit:8.2f} s  ({rep.timings})")
        print(f"ratio labels per unit / report unit: {per_unit / t_unit:.4f}")
    for lab in labs[: args.show]:
        names = ", ".join(f"{c} {v:+.2f}" for c, v in lab.top[:3])
        shown = sorted({name.split(" (")[0] for name in ex.names(lab.unit.channel)})
        print(f"  {lab.unit.title:>11}: {names}   | top examples from: {', '.join(shown)}")


if __name__ == "__main__":
    main()
