"""The ``captum-fv`` command line's arguments: every subcommand and option, with its help.

:mod:`captum_fv.cli` runs the commands.
"""

from __future__ import annotations

import argparse

from .report.core import ATLAS_GRID

DEMO_LAYER = "_blocks.8"
DEMO_UNITS = "0-5"


def parser() -> argparse.ArgumentParser:
    """The parser of every subcommand and option (``captum-fv --help``)."""
    p = argparse.ArgumentParser(prog="captum-fv", description="Feature visualization for Captum.")
    sub = p.add_subparsers(dest="command", required=True)
    model_help = (
        "efficientnet_lite0 (default), efficientnet_lite1, efficientnet_lite2, torchvision:NAME, "
        "or package.module:factory"
    )

    r = sub.add_parser("report", help="build a neuron report (no arguments: the demo)")
    r.add_argument("--model", default="efficientnet_lite0", help=model_help)
    r.add_argument("--weights", help="local state_dict file for the model")
    r.add_argument(
        "--layer",
        action="append",
        default=None,
        metavar="PATTERN",
        help=f"layer name or glob over module names ('_blocks.*': '*' stays within one dotted part, '**' "
        f"crosses dots), optionally with its units ('_blocks.8:0-15'); repeat it for several layers "
        f"(default for the demo: {DEMO_LAYER})",
    )
    r.add_argument(
        "--units",
        default=None,
        help=f"channels of the layers that name none, e.g. 0-15 or 0,3,7, or 'all' (default {DEMO_UNITS})",
    )
    r.add_argument(
        "--classes",
        default=None,
        help="class units of the model output instead of --layer/--units, e.g. 243,559 (ranges as for --units)",
    )
    r.add_argument(
        "--transfer-model",
        action="append",
        default=[],
        metavar="SPEC",
        help="with --classes: also report each class's top-1/top-5 on its pictures under this model "
        "(same forms as --model; SPEC@FILE loads local weights); repeat it for several",
    )
    r.add_argument(
        "--no-trust",
        action="store_true",
        help="skip the trust block (how far each picture agrees with the unit's photos; on by default)",
    )
    r.add_argument("--data", default="sample", help="'sample' (bundled photos) or a folder of images")
    r.add_argument("--size", type=int, default=128, help="image size in pixels")
    r.add_argument("--steps", type=int, default=256, help="optimization steps")
    r.add_argument("--facets", type=int, default=4, help="diversity facets per unit")
    r.add_argument("--k", type=int, default=6, help="top/bottom dataset examples per unit")
    r.add_argument("--attribution", default="integrated_gradients", help="attribution method name")
    r.add_argument(
        "--n-steps",
        type=int,
        default=None,
        help="integrated gradients: path steps to start with (Captum's n_steps; default 24, over "
        "a path cut at 1%% and 5%% from the baseline, see captum_fv.report.REPORT_REFINEMENT)",
    )
    r.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="integrated gradients: redo an example with more steps while its convergence "
        "delta exceeds this fraction of its activation change (default 0.1, up to 128 steps; 0: never)",
    )
    r.add_argument(
        "--path-cuts",
        metavar="CUTS",
        help="integrated gradients: fractions of the path from the baseline where it is cut, each segment "
        "getting an equal share of the steps (default 0.01,0.05; 'none': Captum's uncut path)",
    )
    r.add_argument(
        "--output",
        default=None,
        help="for models whose output is a dict, tuple or ModelOutput: the key or index that "
        "holds the logits (default: 'logits', or a tuple's first element)",
    )
    r.add_argument("--seed", type=int, default=0)
    r.add_argument(
        "--recipe",
        default=None,
        help="render recipe: fourier, maco, aligned (default: maco for --classes, else fourier)",
    )
    r.add_argument(
        "--accentuate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="accentuate each top example: what beside where (default on; about 4%% of the demo's time)",
    )
    r.add_argument(
        "--max-batch",
        type=int,
        default=64,
        help="most images optimized at once; units are optimized (and shared among "
        "torchrun processes) in chunks of max_batch // (2 + facets)",
    )
    r.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: the GPU cuda:LOCAL_RANK when CUDA is available, else the CPU",
    )
    r.add_argument("--out", default="report", help="output folder (nothing is written outside it)")
    r.add_argument(
        "--resume",
        action="store_true",
        help="keep units already complete in --out under the same model, weights, data and settings; redo the others",
    )
    r.add_argument(
        "--force",
        action="store_true",
        help="write into an existing folder that is not a captum-fv report, if none of the "
        "report's names (index.html, report.json, layers/, units/) is there",
    )
    r.add_argument(
        "--no-labels",
        action="store_true",
        help="skip the automatic labels (output classes each unit drives; dataset classes of its top examples)",
    )
    r.add_argument(
        "--atlas",
        type=int,
        nargs="?",
        const=ATLAS_GRID,
        metavar="GRID",
        help=f"also an activation atlas of each layer, GRID x GRID cells at most (default {ATLAS_GRID}, "
        "up to 20; layers/<layer>/atlas/atlas.html; opt-in, adds time)",
    )
    r.add_argument(
        "--autocast",
        choices=("none", "bf16"),
        default="none",
        help="optimize under bfloat16 autocast (for GPUs with bf16; the numbers reported stay float32)",
    )
    r.add_argument("--channels-last", action="store_true", help="optimize in channels-last memory format (GPUs)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")

    ev = sub.add_parser("evolve", help="the same units across checkpoints, side by side")
    ev.add_argument("--model", default="efficientnet_lite0", help=model_help)
    ev.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        metavar="FILE",
        help="a local state_dict file, oldest first; repeat it (the last is the final one)",
    )
    ev.add_argument("--layer", required=True, help="layer name (see: captum-fv layers)")
    ev.add_argument("--units", default=DEMO_UNITS, help="channels, e.g. 0-15 or 0,3,7")
    ev.add_argument("--data", default="sample", help="'sample' (bundled photos) or a folder of images")
    ev.add_argument("--size", type=int, default=128, help="image size in pixels")
    ev.add_argument("--steps", type=int, default=256, help="optimization steps")
    ev.add_argument("--facets", type=int, default=0, help="diversity facets per unit and checkpoint")
    ev.add_argument("--k", type=int, default=6, help="top dataset examples per unit and checkpoint")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--max-batch", type=int, default=64, help="most images optimized at once")
    ev.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ev.add_argument("--out", default="evolution", help="output folder (nothing is written outside it)")
    ev.add_argument("--resume", action="store_true", help="keep units and checkpoint stages already complete in --out")
    ev.add_argument("--force", action="store_true", help="write into an existing folder that is not captum-fv's")
    ev.add_argument("--recipe", default=None, help="render recipe: fourier (default), maco, aligned")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")

    ly = sub.add_parser("layers", help="list a model's layers with their output shapes")
    ly.add_argument("--model", default="efficientnet_lite0", help=model_help)
    ly.add_argument("--weights")
    ly.add_argument("--size", type=int, default=224)

    sub.add_parser("objectives", help="list registered objectives, attribution methods and render recipes")
    return p
