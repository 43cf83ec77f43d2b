"""A full-layer audit of the default model at the demo's settings: units per minute and the split
of the time between optimization and everything else the report does (mining, attribution,
trust, labels, writing). Prints figures measured in one run.

    python benchmarks/bench_audit.py [--units N] [--layer L] [--steps S] [--out DIR] [--no-trust]

Goal (issue 16): all 112 channels of ``_blocks.8`` in at most 30 minutes on 2 CPU cores, the
phases other than optimization together at most 25% of the optimization time. ``--units N``
audits the first N channels (the per-unit phases scale with N, mining does not).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

import torch

import captum_fv as fv


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--units", type=int, default=112)
    p.add_argument("--layer", default="_blocks.8")
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--out", default=None, help="keep the report here (default: a temporary folder)")
    p.add_argument("--no-trust", action="store_true")
    args = p.parse_args()
    fv.tune_cpu_allocator()
    model = fv.models.efficientnet_lite0().eval()
    out = args.out or tempfile.mkdtemp(prefix="bench_audit_")
    t = time.perf_counter()
    report = fv.NeuronReport(
        model, f"{args.layer}:0-{args.units - 1}", steps=args.steps, trust=not args.no_trust, progress=False
    )
    report.run(None, out)
    wall = time.perf_counter() - t
    timings = report.timings
    opt = timings["optimization"]
    other = {k: v for k, v in timings.items() if k != "optimization"}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.units} units of {args.layer}")
    print(f"wall {wall / 60:.1f} min: {args.units / (wall / 60):.2f} units per minute")
    print(f"  optimization {opt:7.1f} s")
    for k, v in sorted(other.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<12} {v:7.1f} s  {v / opt:5.1%} of optimization")
    rest = sum(other.values())
    unaccounted = wall - opt - rest
    print(f"  other phases together {rest:.1f} s = {rest / opt:.1%} of optimization (goal <= 25%)")
    print(f"  setup and index pages (wall minus phases) {unaccounted:.1f} s")
    if args.units < 112:
        per_unit = (opt + sum(v for k, v in other.items() if k != "mining")) / args.units
        estimate = timings.get("mining", 0.0) + per_unit * 112 + unaccounted
        print(f"  extrapolated to 112 units: {estimate / 60:.1f} min (goal <= 30)")
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
