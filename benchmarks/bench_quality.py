"""Quality benchmark: per recipe (``fv.recipes()``), how believable and how strong the pictures are.

    python benchmarks/bench_quality.py [classes|channels|sweeps ...] [--quick] [--recipes fourier,maco] [--threads N]

(``--recipes none``: no ``recipe=`` argument at all, the render's default for the objective kind;
``--class-batch N``: class images rendered N at a time, a memory limit, e.g. 8 for "maco"'s crops.)
``--threads 1`` is much faster on a machine whose cores other processes keep busy (PyTorch's
worker threads spin waiting for each other); CPU seconds are printed beside wall seconds.

* classes:  16 ImageNet classes rendered on EfficientNet-Lite0 (224 px, batch 16, 128 steps): own top-1,
            and top-1 / top-5 on EfficientNet-Lite1 and -Lite2, fed the same 224 px images (the models take
            any size) and, as a second reading, the images resized to each model's training resolution
            (240 / 260). Contact sheets go to benchmarks/out/: ``classes_<recipe>.png`` (class index and name
            under each image) and ``classes_<recipe>_blind.png`` (shuffled, numbered only, no labels; the
            key, position -> class, is in ``classes_<recipe>_key.json``) for naming each image's class
            blind; the images themselves in ``classes_<recipe>.pt``.
* channels: 16 evenly spaced channels in each of three layers, early to late: activation over the best
            natural crop (256 crops of the bundled photos, ``sample_images(size=128, crops=32)``) and
            high-frequency energy (``fv.metrics.high_frequency_energy``; natural photos measure 0.02-0.07);
            a contact sheet per layer and recipe, ``channels_<recipe>_<layer>.png`` (the unit's image over
            its best natural crop).
* sweeps:   64 channels each of ``_blocks.8._depthwise_conv`` and ``_blocks.8`` in one batch (96 px,
            96 steps): how many end below their best natural crop, how many raise, how many end exactly 0,
            and how many the render reports as dead.

Recipes that need natural examples (``"aligned"``) get each unit's top natural crops of the same pool.
One table per measure, recipes as rows; wall time per part; all figures also in
benchmarks/out/bench_quality.json. ``--quick`` is a smoke run with tiny settings (figures meaningless).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

import captum_fv as fv
from captum_fv import objectives as obj
from captum_fv.recipe import get_recipe

OUT = os.path.join(os.path.dirname(__file__), "out")
CLASSES = (243, 559, 438, 990, 949, 853, 609, 915, 455, 541, 630, 741, 471, 129, 99, 251)
LAYERS = ("_blocks.3", "_blocks.8", "_blocks.13")
SWEEP_LAYERS = ("_blocks.8._depthwise_conv", "_blocks.8")
TOP_EXAMPLES = 6  # natural crops given to a recipe with a dataset prior, per unit


@dataclass(frozen=True)
class Settings:
    classes: int
    class_size: int
    class_steps: int
    channels: int
    channel_size: int
    channel_steps: int
    crops: int  # per bundled photo
    sweep_units: int
    sweep_size: int
    sweep_steps: int


FULL = Settings(16, 224, 128, 16, 128, 128, 32, 64, 96, 96)
QUICK = Settings(4, 96, 8, 4, 64, 8, 4, 16, 64, 8)


# ----------------------------------------------------------------------------- helpers


def recipe_names(arg: str | None) -> list[str | None]:
    """The recipes to measure: ``--recipes a,b`` or all of ``fv.recipes()``; ``none`` names no recipe
    (the render's own default, with no ``recipe=`` argument)."""
    names = arg.split(",") if arg else list(fv.recipes())
    return [None if n == "none" else n for n in names]


def needs_examples(recipe: str | None) -> bool:
    return recipe is not None and get_recipe(recipe).needs_examples


def recipe_kwargs(recipe: str | None, examples: list[torch.Tensor] | None) -> dict[str, object]:
    """Keyword arguments naming the recipe (and its examples when it needs them)."""
    kw: dict[str, object] = {} if recipe is None else {"recipe": recipe}
    if needs_examples(recipe):
        kw["examples"] = examples
    return kw


def crops(size: int, per_photo: int) -> torch.Tensor:
    """The natural crop pool: ``per_photo`` seeded crops of each bundled photo, (N, 3, size, size)."""
    ds = fv.data.sample_images(size=size, crops=per_photo)
    return torch.stack([ds[i][0] for i in range(len(ds))])


def spaced(n_channels: int, n: int) -> list[int]:
    """``n`` evenly spaced channel indices from 0 to ``n_channels - 1``."""
    return sorted(set(np.linspace(0, n_channels - 1, n).round().astype(int).tolist()))


def top_k(scores: torch.Tensor, pool: torch.Tensor, k: int) -> list[torch.Tensor]:
    """Per column of ``scores`` (N, U), the ``k`` pool images scoring highest."""
    idx = scores.topk(min(k, scores.shape[0]), dim=0).indices  # (k, U)
    return [pool[idx[:, u]] for u in range(scores.shape[1])]


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(map(str, header))] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return f"\n{title}\n" + "\n".join(lines)


def contact_sheet(images: torch.Tensor, captions: Sequence[str], path: str, cols: int = 4) -> None:
    """A grid of ``images`` (B, 3, H, W) in [0, 1] with a caption under each, saved as PNG."""
    b, _, h, w = images.shape
    band = 16
    rows = (b + cols - 1) // cols
    sheet = Image.new("RGB", (cols * w, rows * (h + band)), "white")
    draw = ImageDraw.Draw(sheet)
    arr = (images.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    for i in range(b):
        x, y = (i % cols) * w, (i // cols) * (h + band)
        sheet.paste(Image.fromarray(arr[i]), (x, y))
        draw.text((x + 3, y + h + 2), captions[i][: w // 6], fill="black")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sheet.save(path)


# ----------------------------------------------------------------------------- classes


def topk_hits(
    model: nn.Module, images: torch.Tensor, classes: Sequence[int], size: int | None = None
) -> tuple[int, int]:
    """How many images ``model`` gives their class as top-1 and within its top 5."""
    x = (
        images
        if size is None or size == images.shape[-1]
        else F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    )
    with torch.no_grad():
        top5 = model(x).topk(5, dim=1).indices
    target = torch.tensor(classes)[:, None]
    return int((top5[:, :1] == target).sum()), int((top5 == target).any(1).sum())


def class_examples(model: nn.Module, classes: Sequence[int], s: Settings) -> list[torch.Tensor]:
    """Each class's top natural crops by its logit (for a recipe with a dataset prior)."""
    pool = crops(s.class_size, s.crops)
    logits = fv.activations(model, None, pool, batch_size=32)
    return top_k(logits[:, list(classes)], pool, TOP_EXAMPLES)


def render_classes(
    lite0: nn.Module,
    classes: Sequence[int],
    recipe: str | None,
    examples: list[torch.Tensor] | None,
    s: Settings,
    chunk: int,
) -> torch.Tensor:
    """The class images, ``chunk`` classes per render (seed = chunk index): one batch of all of
    them when ``chunk`` covers them, else a memory limit (the slots do not interact; only the
    starting noise differs)."""
    images = []
    for i in range(0, len(classes), chunk):
        part = list(classes[i : i + chunk])
        res = fv.render(
            lite0,
            obj.class_logit(part, batch=range(len(part))),
            size=s.class_size,
            batch=len(part),
            steps=s.class_steps,
            progress=False,
            seed=i // chunk,
            **recipe_kwargs(recipe, None if examples is None else examples[i : i + chunk]),
        )
        images.append(res.images)
    return torch.cat(images)


def bench_classes(
    lite0: nn.Module, others: dict[str, nn.Module], recipes: Sequence[str | None], s: Settings, chunk: int | None = None
) -> list[dict[str, object]]:
    classes = list(CLASSES[: s.classes])
    labels = fv.models.imagenet_labels()
    examples = class_examples(lite0, classes, s) if any(map(needs_examples, recipes)) else None
    rows = []
    for recipe in recipes:
        t, c = time.perf_counter(), time.process_time()
        images = render_classes(lite0, classes, recipe, examples, s, chunk or len(classes))
        row: dict[str, object] = {"recipe": str(recipe), "own_top1": topk_hits(lite0, images, classes)[0]}
        for name, model in others.items():
            row[f"{name}_top1"], row[f"{name}_top5"] = topk_hits(model, images, classes)
            native = model.spec.resolution
            row[f"{name}@{native}_top1"], row[f"{name}@{native}_top5"] = topk_hits(model, images, classes, native)
        row["hf_energy"] = float(fv.metrics.high_frequency_energy(images).median())
        row["batch"] = min(chunk or len(classes), len(classes))
        row["seconds"] = round(time.perf_counter() - t, 1)
        row["cpu_seconds"] = round(time.process_time() - c, 1)
        rows.append(row)
        save_class_sheets(images, classes, labels, str(recipe))
    return rows


def save_class_sheets(images: torch.Tensor, classes: Sequence[int], labels: Sequence[str], recipe: str) -> None:
    contact_sheet(images, [f"{c} {labels[c]}" for c in classes], os.path.join(OUT, f"classes_{recipe}.png"))
    order = list(range(len(classes)))
    random.Random(f"blind-{recipe}").shuffle(order)  # its own order per recipe: one key tells nothing of another
    contact_sheet(
        images[order], [f"#{i + 1}" for i in range(len(order))], os.path.join(OUT, f"classes_{recipe}_blind.png")
    )
    key = {f"#{i + 1}": {"class": classes[j], "label": labels[classes[j]]} for i, j in enumerate(order)}
    with open(os.path.join(OUT, f"classes_{recipe}_key.json"), "w") as f:
        json.dump(key, f, indent=1)
    torch.save(images, os.path.join(OUT, f"classes_{recipe}.pt"))


# ----------------------------------------------------------------------------- channels and sweeps


@dataclass
class UnitRun:
    """One recipe's run over units of a layer: what each reached and what went wrong."""

    reached: torch.Tensor | None  # (U,) the unit's value on its image; None when the run raised
    hf_energy: torch.Tensor | None  # (U,)
    error: str | None
    warnings: list[str]
    images: torch.Tensor | None = None  # (U, 3, H, W)


def natural_best(model: nn.Module, layer: str, pool: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel of ``layer``: spatial means on every pool crop (N, C) and the best over crops (C,)."""
    means = fv.activations(model, layer, pool, batch_size=64).float().mean(dim=(2, 3))
    return means, means.max(dim=0).values


def run_units(
    model: nn.Module,
    layer: str,
    units: Sequence[int],
    size: int,
    steps: int,
    recipe: str | None,
    examples: list[torch.Tensor] | None,
) -> UnitRun:
    """Visualize ``units`` of ``layer`` in one batch; errors and warnings are recorded, not raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            vs = fv.NeuronVisualization(model, layer).visualize(
                list(units),
                size=size,
                steps=steps,
                max_batch=len(units),
                progress=False,
                **recipe_kwargs(recipe, examples),
            )
        except Exception as err:  # noqa: BLE001 - the benchmark counts failures rather than stopping
            return UnitRun(None, None, f"{type(err).__name__}: {err}", [str(w.message) for w in caught])
    reached = torch.stack([v.activation["positive"].flatten()[0] for v in vs])
    images = torch.cat([v.positive for v in vs])
    hfe = fv.metrics.high_frequency_energy(images)
    return UnitRun(reached, hfe, None, [str(w.message) for w in caught], images)


def bench_channels(model: nn.Module, recipes: Sequence[str | None], s: Settings) -> list[dict[str, object]]:
    pool = crops(s.channel_size, s.crops)
    rows = []
    for layer in LAYERS:
        means, best = natural_best(model, layer, pool)
        units = spaced(means.shape[1], s.channels)
        examples = top_k(means[:, units], pool, TOP_EXAMPLES)
        natural_hfe = fv.metrics.high_frequency_energy(torch.cat(examples[:4])).median()
        for recipe in recipes:
            t, c = time.perf_counter(), time.process_time()
            run = run_units(model, layer, units, s.channel_size, s.channel_steps, recipe, examples)
            row: dict[str, object] = {
                "recipe": str(recipe),
                "layer": layer,
                "units": len(units),
                "natural_hf_energy": float(natural_hfe),
            }
            if run.reached is None:
                row["error"] = run.error
            else:
                ratio = run.reached / best[units].clamp(min=1e-6)
                row.update(
                    median_ratio=float(ratio.median()),
                    min_ratio=float(ratio.min()),
                    at_least_best=int((ratio >= 1).sum()),
                    median_hf=float(run.hf_energy.median()),
                    max_hf=float(run.hf_energy.max()),
                    hf_in_natural_range=int(((run.hf_energy >= 0.02) & (run.hf_energy <= 0.07)).sum()),
                )
                save_channel_sheet(run.images, [ex[0] for ex in examples], units, ratio, f"{recipe}_{layer}")
            row["warnings"], row["seconds"] = len(run.warnings), round(time.perf_counter() - t, 1)
            row["cpu_seconds"] = round(time.process_time() - c, 1)
            rows.append(row)
    return rows


def save_channel_sheet(
    images: torch.Tensor, best: Sequence[torch.Tensor], units: Sequence[int], ratio: torch.Tensor, name: str
) -> None:
    """Each unit's image beside its best natural crop (captions: channel and activation / best)."""
    pairs = torch.stack([t for img, nat in zip(images, best) for t in (img, nat)])
    captions = [c for u, r in zip(units, ratio.tolist()) for c in (f"ch{u} x{r:.2f}", "best natural")]
    contact_sheet(pairs, captions, os.path.join(OUT, f"channels_{name}.png"), cols=8)


def bench_sweeps(model: nn.Module, recipes: Sequence[str | None], s: Settings) -> list[dict[str, object]]:
    pool = crops(s.sweep_size, s.crops)
    rows = []
    for layer in SWEEP_LAYERS:
        means, best = natural_best(model, layer, pool)
        units = list(range(min(s.sweep_units, means.shape[1])))
        examples = top_k(means[:, units], pool, TOP_EXAMPLES)
        for recipe in recipes:
            t, c = time.perf_counter(), time.process_time()
            run = run_units(model, layer, units, s.sweep_size, s.sweep_steps, recipe, examples)
            row: dict[str, object] = {"recipe": str(recipe), "layer": layer, "units": len(units)}
            if run.reached is None:
                row.update(raised=len(units), below_best="-", exactly_zero="-", error=run.error)
            else:
                row.update(
                    raised=0,
                    below_best=int((run.reached < best[units]).sum()),
                    exactly_zero=int((run.reached == 0).sum()),
                    median_ratio=float((run.reached / best[units].clamp(min=1e-6)).median()),
                )
            row["dead_warnings"] = sum("dead" in w or "zero gradient" in w for w in run.warnings)
            row["seconds"] = round(time.perf_counter() - t, 1)
            row["cpu_seconds"] = round(time.process_time() - c, 1)
            rows.append(row)
            if run.error:
                print(f"  {layer} / {recipe}: {run.error[:300]}")
    return rows


# ----------------------------------------------------------------------------- main


def print_rows(title: str, rows: list[dict[str, object]]) -> None:
    header = list(dict.fromkeys(k for r in rows for k in r if k != "error"))
    print(table(title, header, [[r.get(k, "") for k in header] for r in rows]))
    for r in rows:
        if r.get("error"):
            print(f"  error ({r['recipe']}, {r.get('layer', '')}): {str(r['error'])[:300]}")


def main(argv: Sequence[str]) -> None:
    quick = "--quick" in argv
    s = QUICK if quick else FULL
    arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--recipes=")), None)
    if "--recipes" in argv:
        arg = argv[list(argv).index("--recipes") + 1]
    parts = [p for p in argv if p in ("classes", "channels", "sweeps")] or ["classes", "channels", "sweeps"]
    recipes = recipe_names(arg)
    if "--threads" in argv:
        torch.set_num_threads(int(argv[list(argv).index("--threads") + 1]))
    fv.tune_cpu_allocator()
    torch.manual_seed(0)
    print(f"settings: {asdict(s)}\nrecipes: {recipes}  threads: {torch.get_num_threads()}")
    lite0 = fv.models.efficientnet_lite0()
    results: dict[str, object] = {"settings": asdict(s), "recipes": [str(r) for r in recipes]}
    timings = []
    for part in parts:
        t, c = time.perf_counter(), time.process_time()
        if part == "classes":
            others = {"lite1": fv.models.efficientnet_lite1(), "lite2": fv.models.efficientnet_lite2()}
            chunk = int(argv[list(argv).index("--class-batch") + 1]) if "--class-batch" in argv else None
            rows = bench_classes(lite0, others, recipes, s, chunk)
            print_rows(
                f"class images ({s.classes} classes, {s.class_size} px, {s.class_steps} steps; "
                f"hits out of {s.classes})",
                rows,
            )
        elif part == "channels":
            rows = bench_channels(lite0, recipes, s)
            print_rows(
                f"channels ({s.channels} per layer, {s.channel_size} px, {s.channel_steps} steps; "
                "ratio = activation / best natural crop)",
                rows,
            )
        else:
            rows = bench_sweeps(lite0, recipes, s)
            print_rows(
                f"sweeps ({s.sweep_units} channels per layer, one batch, {s.sweep_size} px, {s.sweep_steps} steps)",
                rows,
            )
        results[part] = rows
        timings.append([part, round(time.perf_counter() - t, 1), round(time.process_time() - c, 1)])
    print(table("time per part", ["part", "wall seconds", "cpu seconds"], timings))
    results["timings"] = timings
    save_results(results, os.path.join(OUT, "bench_quality_quick.json" if quick else "bench_quality.json"))
    print(f"contact sheets and figures in {OUT}")


def save_results(results: dict[str, object], path: str) -> None:
    """Write ``results``, keeping rows of an earlier run of the same settings for recipes (and
    parts) this run did not measure, so parts and recipes can be run one at a time."""
    old: dict[str, object] = {}
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
    if old.get("settings") == results["settings"]:
        ran = set(results["recipes"])
        for part in ("classes", "channels", "sweeps"):
            kept = [r for r in old.get(part, []) if part not in results or r["recipe"] not in ran]
            if kept or part in results:
                results[part] = kept + list(results.get(part, []))
        results["recipes"] = list(dict.fromkeys(list(old.get("recipes", [])) + list(results["recipes"])))
        results["timings"] = list(old.get("timings", [])) + list(results["timings"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main(sys.argv[1:])
