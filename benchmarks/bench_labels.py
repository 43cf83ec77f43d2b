"""Cost of automatic labels (captum_fv.labels) against the report work they sit beside.

Times, in one run on the default model: ``output_classes`` for 16 channels of a layer, each on
its own 32 top examples (one clean forward, then a tail forward per unit and example); the same
examples through one plain full forward (for scale); the optimization of one report unit at the
report's default settings (a batch of 2 + facets images, ``steps`` forward+backward passes, from
two short runs: setup once, per-step cost from their difference), and, with ``--report``, a
whole report unit built by ``NeuronReport`` (mining, optimization, attribution). Prints the
ratio of the labels' cost per unit to a report unit's, in wall and in CPU seconds (CPU time is
what other processes on a shared machine disturb least), and what the labels say for the
first units, with the photos their top examples come from.

    python benchmarks/bench_labels.py                   # _blocks.8, 16 units x 32 examples
    python benchmarks/bench_labels.py --layer _blocks.15 --report
"""

from __future__ import annotations

import argparse
import time

import torch

import captum_fv as fv
from captum_fv.report import NeuronReport


class Clock:
    """Wall and CPU seconds of a block; CPU time (this process, all its threads) is what other
    processes on a shared machine disturb least."""

    def __enter__(self) -> "Clock":
        self.start = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc: object) -> None:
        self.spent = (time.perf_counter() - self.start[0], time.process_time() - self.start[1])

    def __str__(self) -> str:
        return f"{self.spent[0]:8.2f}  {self.spent[1]:8.2f}"


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
    fv.models.imagenet_labels()  # its first call imports torchvision (seconds): a one-time cost, not timed

    with Clock() as t_labels:
        labs = fv.labels.output_classes(model, args.layer, tops, units)
    with torch.no_grad(), Clock() as t_forward:
        for x in torch.cat(tops).split(64):
            model(x)
    viz = fv.NeuronVisualization(model, args.layer)
    few, more = 4, 4 + args.probe_steps
    runs = []
    for steps in (few, more):
        with Clock() as c:
            viz.visualize(0, size=args.size, steps=steps, facets=args.facets, negative=True, progress=False)
        runs.append(c)
    # setup counted once, the per-step cost from the difference of the two runs
    t_opt = [a + (args.steps - few) * (b - a) / args.probe_steps for a, b in zip(runs[0].spent, runs[1].spent)]

    n = args.units * args.k
    per_unit = [t / args.units for t in t_labels.spent]
    print(f"layer {args.layer}, {args.units} units x {args.k} top examples at {args.size} px ({n} rows)")
    print("                                 wall s     CPU s (this process)")
    print(f"output_classes, all units:     {t_labels}")
    print(f"  per unit:                    {per_unit[0]:8.2f}  {per_unit[1]:8.2f}")
    print(f"plain full forward, same rows: {t_forward}")
    shape = f"{2 + args.facets} images x {args.steps} steps"
    print(f"one unit's optimization:       {t_opt[0]:8.2f}  {t_opt[1]:8.2f}  ({shape})")
    print(
        f"labels / forward: {t_labels.spent[1] / t_forward.spent[1]:.2f} (CPU); labels per unit / one unit's "
        f"optimization: {per_unit[0] / t_opt[0]:.4f} (wall), {per_unit[1] / t_opt[1]:.4f} (CPU)"
    )
    if args.report:
        rep = NeuronReport(model, args.layer, ds, size=args.size, steps=args.steps, facets=args.facets, progress=False)
        with Clock() as t_unit:
            rep.build([0])
        print(f"one whole report unit:         {t_unit}  ({ {k: round(v, 1) for k, v in rep.timings.items()} })")
        print(
            f"labels per unit / report unit: {per_unit[0] / t_unit.spent[0]:.4f} (wall), "
            f"{per_unit[1] / t_unit.spent[1]:.4f} (CPU)"
        )
    for lab in labs[: args.show]:
        names = ", ".join(f"{c} {v:+.2f}" for c, v in lab.top[:3])
        shown = sorted({name.split(" (")[0] for name in ex.names(lab.unit.channel)})
        print(f"  {lab.unit.title:>11}: {names}   | top examples from: {', '.join(shown)}")


if __name__ == "__main__":
    main()
