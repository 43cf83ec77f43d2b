"""Calibration and cost of the trust block (captum_fv.trust), on the default model.

Cases with a ground truth, each scored by ``fv.trust.score``:

* off-natural: planted units of a manipulated copy of the model (``fv.trust.plant``: a hidden
  red-green grating branch) judged on the library's own optimized images of them; uniform
  noise images; the images of another (unrelated) unit of the layer;
* consistent: honest visualizations of the default model's units; their natural top examples
  (other crops than the ones mined, so queries are not their own references).

Prints each case's measures, the verdict distribution per kind, false-positive (an off-natural
case called "consistent") and false-negative (a consistent case called "off-natural") rates,
and the time the trust block takes against optimizing the same units.

    python benchmarks/bench_trust.py            # 12 units of _blocks.8, 96 px, 64 steps
    python benchmarks/bench_trust.py --quick    # 4 units
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from typing import Dict, List

import torch

import captum_fv as fv
from captum_fv import trust


def cases(args: argparse.Namespace) -> List[Dict]:
    model = fv.models.efficientnet_lite0()
    ds = fv.data.sample_images(size=args.size, crops=args.crops)
    held = fv.data.sample_images(size=args.size, crops=4, seed=7)  # other crops of the same photos
    units = list(range(0, 112, 112 // args.units))[: args.units]
    ex = fv.DatasetExamples(model, args.layer).collect(ds, k=trust.MIN_EXAMPLES, units=units, progress=False)
    nat = torch.stack([ds[i][0] for i in range(len(ds))])
    viz = fv.NeuronVisualization(model, args.layer)
    t = time.perf_counter()
    vs = viz.visualize(units, size=args.size, steps=args.steps, facets=args.facets, progress=False)
    t_opt = time.perf_counter() - t
    held_ex = fv.DatasetExamples(model, args.layer).collect(held, k=args.facets + 1, units=units, progress=False)
    out, t_trust = [], 0.0
    for i, (u, v) in enumerate(zip(units, vs)):
        pics = torch.cat([v.positive, v.facets])
        other = vs[(i + len(units) // 2) % len(units)]
        for kind, truth, images in [
            ("honest", "consistent", pics),
            ("natural top", "consistent", held_ex.images(u)),
            ("noise", "off-natural", torch.rand_like(pics)),
            ("other unit", "off-natural", torch.cat([other.positive, other.facets])),
        ]:
            t = time.perf_counter()
            r = trust.score(model, args.layer, images, u, ex)
            t_trust += time.perf_counter() - t if kind == "honest" else 0.0
            out.append({"unit": u, "case": kind, "truth": truth, **_row(r)})
    for u in units[: args.planted]:
        pm = trust.plant(model, args.layer, u, nat)
        pv = fv.NeuronVisualization(pm, args.layer).visualize(
            u, size=args.size, steps=args.steps, facets=args.facets, progress=False
        )
        pex = fv.DatasetExamples(pm, args.layer).collect(ds, k=trust.MIN_EXAMPLES, units=[u], progress=False)
        r = trust.score(pm, args.layer, torch.cat([pv.positive, pv.facets]), u, pex)
        out.append({"unit": u, "case": "planted", "truth": "off-natural", **_row(r)})
    print(
        f"time: optimization {t_opt:.1f} s for {len(units)} units, trust on their pictures {t_trust:.1f} s "
        f"({100 * t_trust / t_opt:.0f}% of optimization)"
    )
    return out


def _row(r: trust.TrustRecord) -> Dict:
    return {
        "verdict": r.verdict,
        "path": r.path.summary,
        "mis_fv": r.mis_fv.score,
        "mis_natural": r.mis_natural.score,
        "ratio": r.ratio,
        "leak_free": r.mis_natural.leak_free,
    }


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
    fp = sum(r["verdict"] == "consistent" for r in off) / max(len(off), 1)
    fn = sum(r["verdict"] == "off-natural" for r in ok) / max(len(ok), 1)
    print(
        f"false positives (off-natural called consistent): {fp:.0%} of {len(off)}; "
        f"false negatives (consistent called off-natural): {fn:.0%} of {len(ok)}; "
        f"'check': {sum(r['verdict'] == 'check' for r in rows)} of {len(rows)}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layer", default="_blocks.8")
    p.add_argument("--units", type=int, default=12)
    p.add_argument("--planted", type=int, default=4)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--facets", type=int, default=2)
    p.add_argument("--crops", type=int, default=16)
    p.add_argument("--json", default=None, help="write every case's measures here")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.units, args.planted = 4, 2
    torch.manual_seed(0)
    rows = cases(args)
    summarize(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
