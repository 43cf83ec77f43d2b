"""Calibration and cost of the trust block (captum_fv.trust), on the default model.

``calibration``: cases with a ground truth, each scored by ``fv.trust``:

* off-natural: planted units of a manipulated copy of the model (``fv.trust.plant``: a hidden
  red-green grating branch) judged on the library's own optimized images of them; uniform
  noise images; the images of another (unrelated) unit of the layer;
* consistent: honest visualizations of the default model's units; their natural top examples
  (other crops than the ones mined, so queries are not their own references).

Prints each kind's measures and verdicts, and the false-positive (an off-natural case called
"consistent") and false-negative (a consistent case called "off-natural") rates.

``layer``: the verdict distribution and each measure's quartiles over every channel of the
layer, judged on their honest visualizations.

``cost``: the demo (``captum-fv report`` with no arguments) built twice in this run, with
``--no-trust`` and without; prints both wall times, their ratio and the trust phase's share.

    python benchmarks/bench_trust.py                    # all three parts
    python benchmarks/bench_trust.py --part calibration --quick    # 4 units, 2 planted
    python benchmarks/bench_trust.py --part cost
    python benchmarks/bench_trust.py --part calibration --recipe maco   # judged on MaCo pictures
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

import captum_fv as fv
from captum_fv import cli, trust
from captum_fv.recipe import get_recipe
from captum_fv.report.budget import TRUST_PROBE_STEPS


def _row(r: trust.TrustRecord) -> Dict:
    return {
        "verdict": r.verdict,
        "path": r.path.summary,
        "mis_fv": r.mis_fv.score,
        "mis_natural": r.mis_natural.score,
        "ratio": r.ratio,
        "probe_ratio": r.probe_ratio,
        "leak_free": r.mis_natural.leak_free,
    }


def calibration(args: argparse.Namespace, model: torch.nn.Module) -> List[Dict]:
    ds = fv.data.sample_images(size=args.size, crops=args.crops)
    held = fv.data.sample_images(size=args.size, crops=4, seed=7)  # other crops of the same photos
    units = list(range(0, 112, 112 // args.units))[: args.units]
    ex = fv.DatasetExamples(model, args.layer).collect(ds, k=trust.MIN_EXAMPLES, units=units, progress=False)
    nat = torch.stack([ds[i][0] for i in range(len(ds))])
    vs = fv.NeuronVisualization(model, args.layer).visualize(
        units, size=args.size, steps=args.steps, facets=args.facets, progress=False, recipe=args.recipe
    )
    held_ex = fv.DatasetExamples(model, args.layer).collect(held, k=args.facets + 1, units=units, progress=False)
    scorer = trust.TrustScorer(model, args.layer, ds)
    probes = _probes(model, units, args)
    out = []
    for i, (u, v) in enumerate(zip(units, vs)):
        pics = torch.cat([v.positive, v.facets])
        other = vs[(i + len(units) // 2) % len(units)]
        for kind, truth, images in [
            ("honest", "consistent", pics),
            ("natural top", "consistent", held_ex.images(u)),
            ("noise", "off-natural", torch.rand_like(pics)),
            ("other unit", "off-natural", torch.cat([other.positive, other.facets])),
        ]:
            out.append(
                {"unit": u, "case": kind, "truth": truth, **_row(scorer.score(images, u, ex, probe_values=probes[u]))}
            )
    for u in units[: args.planted]:
        pm = trust.plant(model, args.layer, u, nat)
        pv = fv.NeuronVisualization(pm, args.layer).visualize(
            u, size=args.size, steps=args.steps, facets=args.facets, progress=False, recipe=args.recipe
        )
        pex = fv.DatasetExamples(pm, args.layer).collect(ds, k=trust.MIN_EXAMPLES, units=[u], progress=False)
        probe = _probes(pm, [u], args)[u]
        r = trust.TrustScorer(pm, args.layer, ds).score(torch.cat([pv.positive, pv.facets]), u, pex, probe_values=probe)
        out.append({"unit": u, "case": "planted", "truth": "off-natural", **_row(r)})
    return out


def _probes(model: torch.nn.Module, units: List[int], args: argparse.Namespace) -> Dict[int, object]:
    """A report's Fourier probe of each unit (one image, TRUST_PROBE_STEPS) when the recipe's pictures
    are held to natural statistics (``Recipe.trust_probe``), else None for every unit."""
    if not get_recipe(args.recipe).trust_probe:
        return {u: None for u in units}
    vs = fv.NeuronVisualization(model, args.layer).visualize(
        units, size=args.size, steps=TRUST_PROBE_STEPS, recipe="fourier", progress=False
    )
    return {u: v.activation["positive"].flatten().tolist() for u, v in zip(units, vs)}


def summarize(rows: List[Dict]) -> None:
    print(f"{'case':12s} {'n':>3s} {'path':>15s} {'mis_fv':>13s} {'mis_nat':>6s} {'ratio':>13s}  verdicts")
    for case in dict.fromkeys(r["case"] for r in rows):
        rs = [r for r in rows if r["case"] == case]

        def rng(key):
            vals = sorted(r[key] for r in rs if r[key] is not None)
            return f"{vals[0]:+.3f}..{vals[-1]:+.3f}" if vals else "-"

        med = sorted(r["mis_natural"] for r in rs)[len(rs) // 2]
        print(
            f"{case:12s} {len(rs):3d} {rng('path'):>15s} {rng('mis_fv'):>13s} {med:6.2f} {rng('ratio'):>13s}  "
            f"{dict(Counter(r['verdict'] for r in rs))}"
        )
    off = [r for r in rows if r["truth"] == "off-natural"]
    ok = [r for r in rows if r["truth"] == "consistent"]
    fp = sum(r["verdict"] == "consistent" for r in off)
    fn = sum(r["verdict"] == "off-natural" for r in ok)
    print(
        f"false positives (off-natural called consistent): {fp} of {len(off)}; "
        f"false negatives (consistent called off-natural): {fn} of {len(ok)}; "
        f"'check': {sum(r['verdict'] == 'check' for r in rows)} of {len(rows)}"
    )


def whole_layer(args: argparse.Namespace, model: torch.nn.Module) -> List[Dict]:
    """Every channel of the layer, judged on its honest positive optimum and facets."""
    ds = fv.data.sample_images(size=args.size, crops=args.crops)
    n = fv.activations(model, args.layer, ds[0][0][None]).shape[1]
    units = list(range(n))
    ex = fv.DatasetExamples(model, args.layer).collect(ds, k=trust.MIN_EXAMPLES, units=units, progress=False)
    scorer = trust.TrustScorer(model, args.layer, ds)
    viz = fv.NeuronVisualization(model, args.layer)
    rows = []
    for start in range(0, n, args.chunk):
        part = units[start : start + args.chunk]
        vs = viz.visualize(
            part, size=args.size, steps=args.steps, facets=args.facets, progress=False, seed=start, recipe=args.recipe
        )
        for u, v in zip(part, vs):
            r = scorer.score(torch.cat([v.positive, v.facets]), u, ex)
            rows.append({"unit": u, **_row(r)})
    counts = Counter(r["verdict"] for r in rows)
    print(f"{args.layer}: {n} channels, {args.size} px, {args.steps} steps, {args.facets} facets")
    print("verdicts: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in trust.VERDICTS if counts.get(v)))
    for key in ("ratio", "path", "mis_fv", "mis_natural"):
        vals = np.array([r[key] for r in rows if r[key] is not None])
        q = np.percentile(vals, [0, 25, 50, 75, 100])
        print(f"  {key:12s} min {q[0]:+.3f}  q1 {q[1]:+.3f}  median {q[2]:+.3f}  q3 {q[3]:+.3f}  max {q[4]:+.3f}")
    return rows


def _phases(text: str) -> Dict[str, float]:
    """The phase times the command prints: 'optimization 69.0 s, mining 1.0 s, ...'."""
    return {k: float(v) for k, v in re.findall(r"([a-z]+) ([0-9.]+) s", text)}


def cost(args: argparse.Namespace) -> Dict:
    """The demo command twice, without then with the trust block, timed end to end."""
    out: Dict[str, Dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("without", ["--no-trust"]), ("with", [])):
            buf = io.StringIO()
            t = time.perf_counter()
            with contextlib.redirect_stdout(buf):
                code = cli.main(["report", "--quiet", "--out", str(Path(tmp) / name), *extra])
            wall = time.perf_counter() - t
            assert code == 0, buf.getvalue()
            out[name] = {"wall": wall, **_phases(buf.getvalue())}
            print(f"demo {name} trust: {wall:.1f} s ({buf.getvalue().strip().split('(', 1)[-1].rstrip(')')}")
    a, b = out["without"]["wall"], out["with"]["wall"]
    share = out["with"].get("trust", 0.0) / b
    print(f"with / without: {b / a:.3f}x wall ({100 * (b / a - 1):+.1f}%); trust phase {100 * share:.1f}% of its run")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("calibration", "layer", "cost", "all"), default="all")
    p.add_argument("--layer", default="_blocks.8")
    p.add_argument("--units", type=int, default=12)
    p.add_argument("--planted", type=int, default=4)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--facets", type=int, default=2)
    p.add_argument("--crops", type=int, default=16)
    p.add_argument("--chunk", type=int, default=16, help="layer part: units optimized together")
    p.add_argument(
        "--recipe", default=None, help="calibration and layer parts: the pictures' recipe (default: the unit default)"
    )
    p.add_argument("--json", default=None, help="write every case's measures here")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.units, args.planted = 4, 2
    fv.tune_cpu_allocator()
    torch.manual_seed(0)
    model = fv.models.efficientnet_lite0()
    results: Dict = {}
    if args.part in ("calibration", "all"):
        results["calibration"] = calibration(args, model)
        summarize(results["calibration"])
    if args.part in ("layer", "all"):
        results["layer"] = whole_layer(args, model)
    if args.part in ("cost", "all"):
        results["cost"] = cost(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
