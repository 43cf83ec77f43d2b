"""The ``captum-fv`` command: ``report``, ``evolve``, ``layers`` and ``objectives`` (their
arguments: :mod:`captum_fv.cliargs`).

Exit codes: 0 success, 2 usage error, 1 runtime failure, each failure as one line on stderr
(``CAPTUM_FV_TRACEBACK=1``: a runtime failure's whole traceback instead).
Under ``torchrun`` (``WORLD_SIZE`` > 1) ``report`` shares the work among the processes, one GPU
each when CUDA is available, and rank 0 prints the result.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import List, Optional, Sequence, Union

import torch
from torch import nn

from .cliargs import DEMO_LAYER, DEMO_UNITS, parser
from .imagefile import ImageTooLargeError, UnreadableImageError
from .report.folder import OutputFolderError

#: How long a process waits for the others in a collective: one may still be optimizing its last
#: chunk while the others wait to mine (NCCL's own default, 10 minutes, can be too short).
GROUP_TIMEOUT = timedelta(hours=1)


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""


def parse_units(spec: str, allow_all: bool = False) -> Union[List[int], str]:
    """'0-3,7,9-10' -> [0, 1, 2, 3, 7, 9, 10]; 'all' (where ``allow_all``) -> 'all'."""
    from .selection import ALL, parse_unit_list

    try:
        units = parse_unit_list(spec)
    except ValueError as e:
        raise UsageError(str(e).replace("the unit list", "--units")) from e
    if units == ALL and not allow_all:
        raise UsageError("'all' is not a list of classes here; give ranges and lists like '0-15' or '0,3,7'")
    return units


def load_model(spec: str, weights: Optional[str] = None) -> nn.Module:
    """'efficientnet_lite0', 'torchvision:NAME' or 'package.module:factory' -> model in eval mode
    (:func:`captum_fv.models.load`), its errors as usage errors."""
    from .models import load

    factory = ":" in spec and not spec.startswith("torchvision:")
    if factory and "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # as `python -m` does: a module:factory in this folder
    try:
        model = load(spec, weights)
    except (ValueError, ImportError) as e:  # ImportError: lite1/lite2 without the 'models' extra
        raise UsageError(
            str(e).replace("unknown model", "unknown --model").replace("weights are", "--weights is")
        ) from e
    return model


def _warn_random(spec: str, weights: Optional[str], how: str) -> None:
    """A report on a torchvision model without weights audits a random network: say so (once)."""
    if spec.startswith("torchvision:") and not weights and os.environ.get("RANK", "0") == "0":
        print(f"captum-fv: warning: {spec} has random weights (no {how}): its units mean nothing", file=sys.stderr)


def _device(spec: str) -> torch.device:
    """'auto': cuda:LOCAL_RANK when CUDA is available (one GPU per process), else the CPU."""
    from . import distributed

    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UsageError("--device cuda, but CUDA is not available here; use --device cpu")
    try:
        return distributed.device()
    except RuntimeError as e:
        raise UsageError(str(e)) from e


def _dataset(spec: str, size: int, model: nn.Module):
    """The images of ``--data`` with as many channels as ``model`` takes (RGB, or 1 or 4)."""
    from . import data
    from .modelinfo import infer_in_channels

    channels = infer_in_channels(model, default=3)
    if spec == "sample":
        return data.sample_images(size=size, crops=32, channels=channels)
    if not Path(spec).is_dir():
        raise UsageError(f"--data {spec!r} is neither 'sample' nor a folder of images")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = data.image_folder(spec, size=size, channels=channels)  # bad files: skipped, named in one line
    for w in caught:
        print(f"captum-fv: warning: {w.message}", file=sys.stderr)
    return dataset


def _report(args: argparse.Namespace) -> int:
    from . import distributed
    from .allocator import tune_cpu_allocator
    from .report import NeuronReport

    for name in ("size", "steps", "k", "max_batch"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
    if args.classes is not None and (args.layer is not None or args.units is not None):
        raise UsageError("--classes are units of the model output: drop --layer and --units, or drop --classes")
    if args.transfer_model and args.classes is None:
        raise UsageError("--transfer-model judges class units: add --classes, e.g. --classes 243,559")
    if args.transfer_model and args.no_trust:
        raise UsageError("--transfer-model is part of the trust block: drop --no-trust")
    if args.atlas is not None and not 1 <= args.atlas <= 20:
        raise UsageError(f"--atlas {args.atlas}: the grid is 1 to 20 cells a side (at most 20 x 20)")
    if args.classes is not None:
        units = parse_units(args.classes)
    else:
        units = parse_units(args.units or DEMO_UNITS, allow_all=True)
    from .recipe import get_recipe

    try:
        get_recipe(args.recipe)
    except ValueError as e:
        raise UsageError(str(e)) from e
    device = _device(args.device)
    if device.type == "cpu":
        tune_cpu_allocator()  # our own process: large batches without page-fault storms
    model = load_model(args.model, args.weights).to(device)
    _warn_random(args.model, args.weights, "--weights FILE")
    transfer = [_transfer_model(spec).to(device) for spec in args.transfer_model]
    if args.classes is not None:
        layer: Optional[List[str]] = None
        _check_classes(units, [("--model " + args.model, model)] + list(zip(args.transfer_model, transfer)), args.size)
    else:
        layer = _check_layers(model, args, units)
    from .registry import get_attribution

    try:
        adapter = get_attribution(args.attribution)
    except LookupError as e:  # KeyError is one too
        raise UsageError(str(e).strip("'\"")) from e
    attribution_kwargs = _path_settings(args, adapter)
    dataset = _dataset(args.data, args.size, model)
    backend = "nccl" if device.type == "cuda" else "gloo"
    # Under torchrun: one process group for the run, made here unless the caller has one.
    with distributed.process_group_from_env(backend, GROUP_TIMEOUT):
        t = time.perf_counter()
        report = NeuronReport(
            model,
            layer,
            dataset,
            attribution=args.attribution,
            size=args.size,
            steps=args.steps,
            facets=args.facets,
            k=args.k,
            seed=args.seed,
            max_batch=args.max_batch,
            attribution_kwargs=attribution_kwargs,
            model_name=args.model,
            progress=not args.quiet,
            output=None if args.output is None else int(args.output) if args.output.isdigit() else args.output,
            recipe=args.recipe,
            accentuate=args.accentuate,
            trust=not args.no_trust,
            transfer_models=transfer,
            transfer_names=args.transfer_model,
            labels=not args.no_labels,
            atlas=args.atlas is not None,
            atlas_kwargs=None if args.atlas is None else {"grid": args.atlas},
            autocast=None if args.autocast == "none" else args.autocast,
            channels_last=args.channels_last,
        )
        index = report.run(units, args.out, resume=args.resume, force=args.force)
        if distributed.rank() == 0:
            if report.resumed is not None:
                print(report.resumed.summary())
            split = ", ".join(f"{k} {v:.1f} s" for k, v in report.timings.items())
            procs = f" on {distributed.world_size()} processes" if distributed.is_distributed() else ""
            print(f"report: {index.resolve()}  ({time.perf_counter() - t:.1f} s{procs}: {split})")
    return 0


def _check_layers(model: nn.Module, args: argparse.Namespace, units: Union[List[int], str]) -> List[str]:
    """The --layer patterns (the demo's layer for the default model), checked to match modules
    whose channels hold the units each layer gets."""
    patterns = args.layer or ([DEMO_LAYER] if args.model == "efficientnet_lite0" else None)
    if patterns is None:
        raise UsageError("--layer is required for this model; list names with: captum-fv layers --model ...")
    from .inspection import layers as list_layers
    from .selection import select_layers

    try:
        chosen = select_layers(model, patterns, input_size=args.size)
    except ValueError as e:
        raise UsageError(str(e)) from e
    widths = {row.name: row.shape[0] for row in list_layers(model, input_size=args.size) if row.shape}
    for sel in chosen:
        wanted = sel.units if sel.units is not None else units
        n = widths.get(sel.layer.split("#")[0])
        if n is not None and isinstance(wanted, list) and wanted and max(wanted) >= n:
            raise UsageError(
                f"units go up to {max(wanted)} but layer {sel.layer!r} has {n} channels (0-{n - 1}); "
                f"give that layer its own list, e.g. --layer '{sel.layer}:0-{n - 1}'"
            )
    return list(patterns)


def _transfer_model(spec: str) -> nn.Module:
    """A --transfer-model: SPEC as for --model, SPEC@FILE with local weights."""
    name, _, weights = spec.partition("@")
    if weights and not Path(weights).is_file():
        raise UsageError(f"--transfer-model {spec!r}: weights file {weights!r} does not exist")
    try:
        model = load_model(name, weights or None)
        _warn_random(name, weights, f"--transfer-model {name}@FILE")
        return model
    except UsageError as e:
        raise UsageError(f"--transfer-model {spec!r}: {e}") from e


def _check_classes(units: List[int], models: List[tuple], size: int) -> None:
    """Every class of --classes must be an output of the model and of each transfer model."""
    from .modelinfo import infer_in_channels
    from .visualization import activations

    for label, m in models:
        probe = torch.full((1, infer_in_channels(m, default=3), size, size), 0.5)
        n = activations(m, None, probe).flatten(1).shape[1]
        if max(units) >= n:
            raise UsageError(f"--classes goes up to {max(units)} but {label} has {n} outputs (0-{n - 1})")


def _evolve(args: argparse.Namespace) -> int:
    from . import distributed
    from .evolution import FeatureEvolution

    for name in ("size", "steps", "k", "max_batch"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
    missing = [c for c in args.checkpoint if not Path(c).is_file()]
    if missing:
        raise UsageError(f"--checkpoint {missing[0]!r} is not a file")
    device = _device(args.device)
    model = load_model(args.model).to(device)
    dataset = _dataset(args.data, args.size, model)
    with distributed.process_group_from_env("nccl" if device.type == "cuda" else "gloo", GROUP_TIMEOUT):
        t = time.perf_counter()
        try:
            evolution = FeatureEvolution(
                model,
                args.layer,
                args.checkpoint,
                dataset,
                size=args.size,
                steps=args.steps,
                facets=args.facets,
                k=args.k,
                seed=args.seed,
                max_batch=args.max_batch,
                model_name=args.model,
                progress=not args.quiet,
                recipe=args.recipe,
            )
        except ValueError as e:  # unknown layer, clashing labels, unknown recipe
            raise UsageError(str(e)) from e
        index = evolution.run(parse_units(args.units), args.out, resume=args.resume, force=args.force)
        if distributed.rank() == 0:
            if evolution.resumed is not None:
                print(evolution.resumed.summary())
            print(f"evolution: {index.resolve()}  ({time.perf_counter() - t:.1f} s)")
    return 0


def _path_settings(args: argparse.Namespace, adapter: object) -> dict:
    """--n-steps, --tolerance and --path-cuts as attribution kwargs; only path methods take them."""
    from .attribution import check_cuts

    spec, cuts = (args.path_cuts or "").strip().lower(), None
    try:
        cuts = check_cuts([float(c) for c in spec.split(",")]) if spec not in ("", "none") else cuts
    except ValueError as e:
        raise UsageError(f"--path-cuts {spec!r}: give increasing fractions in (0, 1), e.g. 0.01,0.05, or none") from e
    cuts = () if spec == "none" else cuts
    given = {"n_steps": args.n_steps, "tolerance": args.tolerance, "path_cuts": cuts}
    given = {k: v for k, v in given.items() if v is not None}
    if given and not getattr(adapter, "integrates", False):
        flags = " and ".join("--" + k.replace("_", "-") for k in given)
        raise UsageError(
            f"{flags} apply to integrated gradients; {args.attribution!r} integrates "
            "no path: drop them or use --attribution integrated_gradients"
        )
    if given.get("n_steps", 1) < 1:
        raise UsageError("--n-steps must be >= 1")
    if given.get("tolerance", 0) < 0:
        raise UsageError("--tolerance must be >= 0 (0: one pass with --n-steps)")
    if given.get("tolerance") == 0:
        given["tolerance"] = None
    return given


def _layers(args: argparse.Namespace) -> int:
    from .inspection import layers as list_layers

    model = load_model(args.model, args.weights)
    for row in list_layers(model, input_size=args.size):
        calls = f"  (runs {row.calls}x: use '{row.name}#k')" if row.calls > 1 else ""
        print(f"{row.name:40s} {row.type:22s} {str(tuple(row.shape)):20s}{calls}")
    return 0


def _objectives(args: argparse.Namespace) -> int:
    from .recipe import recipes
    from .registry import catalog

    width = max(60, shutil.get_terminal_size((140, 24)).columns - 36)  # descriptions fill the terminal
    print(catalog(width, extra=[("recipe", name, what) for name, what in recipes().items()]))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)  # exits with 2 on usage errors
    try:
        return {"report": _report, "evolve": _evolve, "layers": _layers, "objectives": _objectives}[args.command](args)
    except (UsageError, OutputFolderError, UnreadableImageError, ImageTooLargeError) as e:
        print(f"captum-fv: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("captum-fv: interrupted; finished units are kept (rerun with --resume)", file=sys.stderr)
        return 130
    except Exception as e:  # one clear line, not a traceback (unless asked for)
        if os.environ.get("CAPTUM_FV_TRACEBACK") == "1":
            raise
        first = (str(e).strip().splitlines() or [""])[0][:400]
        print(f"captum-fv: error: {type(e).__name__}: {first} (CAPTUM_FV_TRACEBACK=1 shows all)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
