"""Write the tutorial notebooks of this folder from the cell sources below, without outputs.

    python tutorials/_build.py          # rewrites every notebook
    python tutorials/_build.py --check  # fails if a notebook differs from what this script writes
    python tutorials/_build.py --execute OUT [NAME.ipynb ...]  # run them, keep outputs and PNGs in OUT

Each notebook reads ``CAPTUM_FV_FAST=1`` (tiny settings, used by tests/test_tutorials.py) and
otherwise runs with the settings that give the pictures its text describes.
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Tuple

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
Cell = Tuple[str, str]


def md(text: str) -> Cell:
    return ("markdown", textwrap.dedent(text).strip("\n"))


def code(*parts: str) -> Cell:
    return ("code", "\n".join(textwrap.dedent(p).strip("\n") for p in parts))


FAST_SWITCH = """
import os

# CAPTUM_FV_FAST=1 runs everything with tiny settings (a smoke test: the pictures are meaningless).
# Leave it unset for the settings that give the pictures described in the text.
FAST = os.environ.get("CAPTUM_FV_FAST", "0") == "1"
"""

SHOW = '''
def show(images, titles=None, ncols=None, scale=2.2, suptitle=None):
    """Draw images (N, 3, H, W) in [0, 1] in a grid, each with its title."""
    images = list(images)
    ncols = ncols or len(images)
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles or [""] * len(images)):
        ax.imshow(img.detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(title, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    plt.show()
'''

# --------------------------------------------------------------------------------------------
# 1. Getting started
# --------------------------------------------------------------------------------------------

GETTING_STARTED: List[Cell] = [
    md("""
    # Feature visualization with captum-fv: getting started

    Attribution methods such as Integrated Gradients tell you *which pixels of this photo* made a
    unit fire. Feature visualization asks the complementary question: *what input would make
    this unit fire the most?* We answer it by optimization. Start from noise, run the model, read
    the unit, and take gradient steps on the **image** (the weights stay frozen) until the unit
    is as high as it gets. The result is a picture of what the unit responds to.

    This tutorial covers the basic objectives on EfficientNet-Lite0, an ImageNet classifier that
    ships with captum-fv:

    1. a **channel** (one feature map, averaged over all positions) and a single **neuron**
       (one position of that map);
    2. channels at different depths, several at once with `fv.NeuronVisualization`;
    3. a whole layer at once: **DeepDream**, from noise and from a photo;
    4. a **class**: its logit versus its softmax probability.

    Every call here runs on the CPU. With the full settings the notebook takes several minutes;
    set `CAPTUM_FV_FAST=1` for a quick smoke run with tiny images.
    """),
    code(FAST_SWITCH, """
    SIZE = 64 if FAST else 128     # image side in pixels
    STEPS = 16 if FAST else 256    # optimization steps per picture
    """),
    code("""
    import matplotlib.pyplot as plt
    import torch

    import captum_fv as fv
    from captum_fv import objectives as obj

    fv.tune_cpu_allocator()  # big batches on a Linux CPU without page-fault storms (README)

    model = fv.models.efficientnet_lite0()   # eval mode, ImageNet weights, takes RGB in [0, 1]
    labels = fv.models.imagenet_labels()
    """, "", "", SHOW),
    md("""
    ## Where to look: layers

    Every layer is addressed by its name in `model.named_modules()`. EfficientNet-Lite0 is a stack
    of 16 inverted-residual blocks, `_blocks.0` to `_blocks.15`; the map gets coarser and the
    channels more numerous as we go deeper. `fv.layers` runs one forward pass and lists every
    layer with its output shape (channels, height, width) for our image size.
    """),
    code("""
    for info in fv.layers(model, input_size=SIZE):
        if info.name.startswith("_blocks.") and info.name.count(".") == 1:
            print(f"{info.name:11s} {str(info.shape):16s}")
    """),
    md("""
    ## A channel

    An *objective* is a function of the model's activations that we maximize. `obj.channel(layer,
    c)` is the mean of channel `c` of `layer` over all positions. `fv.render` optimizes an image
    for it and returns the images, snapshots along the way, and the objective at every step.

    By default `render` already uses the two ingredients that make the pictures readable (see the
    *Regularization* tutorial for what happens without them): the image is parameterized in a
    decorrelated Fourier basis, and the model sees a randomly jittered, scaled and rotated copy
    of it at every step.
    """),
    code("""
    LAYER, CHANNEL = "_blocks.8", 12

    channel_result = fv.render(model, obj.channel(LAYER, CHANNEL), size=SIZE, steps=STEPS)
    print(f"mean activation of channel {CHANNEL} on the final image: {channel_result.values[0]:.2f}")

    fig, (ax_img, ax_curve) = plt.subplots(1, 2, figsize=(7, 3))
    ax_img.imshow(channel_result.images[0].permute(1, 2, 0).numpy())
    ax_img.set_title(f"{LAYER}, channel {CHANNEL}", fontsize=9)
    ax_img.axis("off")
    ax_curve.plot(channel_result.history[:, 0].numpy())
    ax_curve.set_xlabel("step")
    ax_curve.set_ylabel("objective (on the transformed image)")
    fig.tight_layout()
    plt.show()
    """),
    md("""
    The curve is jagged because every step sees a differently jittered, scaled and rotated copy
    of the image, and it is measured on those copies; `result.values` is measured on the final
    image itself.

    The channel is an average over every position of its feature map, so the optimizer gains by
    drawing the feature *everywhere*: the picture is a texture of repeated copies.

    ## A neuron

    A single neuron is one position of that map. `obj.neuron(layer, c)` takes the centre by
    default (`x=`, `y=` pick another). Only the part of the image inside that position's
    receptive field can change its value, so the feature now appears once, around the centre,
    and the border stays close to the grey it started from.
    """),
    code("""
    neuron_result = fv.render(model, obj.neuron(LAYER, CHANNEL), size=SIZE, steps=STEPS)
    show(
        torch.cat([channel_result.images, neuron_result.images]),
        [f"channel {CHANNEL} (all positions)", f"neuron {CHANNEL} (centre position)"],
    )
    """),
    md("""
    ## Many channels at once, at different depths

    `fv.NeuronVisualization(model, layer)` is the Captum-style entry point: like Captum's
    `NeuronAttribution` classes it is built from a forward function and a layer, and its
    `visualize` takes Captum's `neuron_selector` conventions (an int is a whole channel). A list
    of selectors is optimized in one batch, and each result carries the activation it reached.

    In the full-settings run the pictures follow the usual progression. Channels of the early
    block `_blocks.3` draw oriented stripes and weaves, some with a colour preference; those of
    `_blocks.8` draw repeated shapes such as scales, arcs and dotted strokes; those of
    `_blocks.13` draw larger, more object-like parts: eye-like spots, fur and feathers.
    """),
    code("""
    N_UNITS = 2 if FAST else 4
    depths = {"_blocks.3": [0, 1, 2, 3], "_blocks.8": [3, 12, 21, 40], "_blocks.13": [0, 1, 2, 3]}

    for layer, channels in depths.items():
        viz = fv.NeuronVisualization(model, layer)
        results = viz.visualize(channels[:N_UNITS], size=SIZE, steps=STEPS)
        show(
            torch.cat([r.positive for r in results]),
            [f"{r.name}\\nactivation {r.activation['positive'][0]:.1f}" for r in results],
            suptitle=layer,
        )
    """),
    md("""
    ## DeepDream: a whole layer

    `obj.deepdream(layer)` maximizes the mean *squared* activation of a whole layer: every channel
    that is already active gets amplified, whichever it is. Started from noise it paints a mix of
    the layer's favourite patterns. Started from a photo (`fv.param.image(..., init=photo)`) with
    a few steps, it exaggerates what the layer already sees in that photo, which is the original
    DeepDream effect.
    """),
    code("""
    DREAM_LAYER = "_blocks.5"
    photo = fv.data.sample_images(size=SIZE)[1][0]  # (3, H, W) in [0, 1]: Chelsea the cat

    dream_noise = fv.render(model, obj.deepdream(DREAM_LAYER), size=SIZE, steps=STEPS)
    dream_photo = fv.render(
        model,
        obj.deepdream(DREAM_LAYER),
        param=fv.param.image(SIZE, init=photo[None]),
        steps=max(STEPS // 4, 4),
        lr=0.02,
    )
    show(
        torch.stack([dream_noise.images[0], photo, dream_photo.images[0]]),
        ["DeepDream from noise", "photo", "DeepDream from the photo"],
    )
    """),
    md("""
    ## A class: logit or probability?

    The model output is a layer too. `obj.class_logit(k)` maximizes the pre-softmax score of
    ImageNet class `k`; `obj.class_probability(k)` its softmax probability. They sound alike but
    are not. The probability depends on every class: it can be raised by pushing the *other*
    classes down instead of drawing more of this one, and once this class dominates the softmax
    saturates, so its gradient vanishes and the picture stops improving. The logit has neither
    problem, which is why feature visualization usually optimizes logits.
    """),
    code("""
    CLASS = labels.index("goldfinch")

    by_logit = fv.render(model, obj.class_logit(CLASS), size=SIZE, steps=STEPS)
    by_prob = fv.render(model, obj.class_probability(CLASS), size=SIZE, steps=STEPS)

    pictures = torch.cat([by_logit.images, by_prob.images])
    with torch.no_grad():
        logits = model(pictures)
    probs = logits.softmax(1)
    titles = []
    for name, lg, p in zip(["maximize logit", "maximize probability"], logits, probs):
        top = p.topk(3)
        runner_up = torch.cat([lg[:CLASS], lg[CLASS + 1:]]).max()
        print(f"{name:21s} logit {lg[CLASS]:6.1f}  probability {p[CLASS]:.3f}  "
              f"margin over the runner-up {lg[CLASS] - runner_up:6.1f}")
        print("    top-3: " + ", ".join(f"{labels[i]} {v:.2f}" for v, i in zip(top.values, top.indices)))
        titles.append(f"{name}\\nlogit {lg[CLASS]:.1f}, p {p[CLASS]:.2f}")
    show(pictures, titles, suptitle=f"class {CLASS}: {labels[CLASS]}")
    """),
    md("""
    In our full-settings run both pictures end with a probability of 1.00, but the one optimized
    for the probability stopped early: its logit is much lower (about 29 against 48), so is its
    margin over the runner-up class (about 17 against 26), and it shows
    far less of the goldfinch's yellow and black. The logit-optimized picture has patches of
    bright yellow with dark markings scattered over a feathery texture.

    ## Where next

    * *Regularization*: why the default parameterization and transforms matter, measured.
    * *Diversity and interaction*: several facets of one unit, negative optima, combinations of
      units and random directions.
    * *Captum workflow*: add a visualization step to an attribution you already run.
    * *Auditing your own model*: any torchvision architecture, your checkpoint, your images.
    """),
]

# --------------------------------------------------------------------------------------------
# 2. Regularization
# --------------------------------------------------------------------------------------------

REGULARIZATION: List[Cell] = [
    md("""
    # The enemy of feature visualization: high frequencies

    If you optimize the pixels of an image to excite a unit, and do nothing else, you get an
    activation far above anything a natural image reaches and a picture of nothing: a fine,
    high-frequency mesh that exploits the network the way an adversarial example does. The
    Distill article *Feature Visualization* (Olah, Mordvintsev & Schubert, 2017) calls this the
    enemy of feature visualization and compares three families of remedies:

    * **frequency penalties**, costs subtracted from the objective: L1 (distance from grey),
      total variation (differences between neighbouring pixels) and blur (distance from a
      blurred copy of the image);
    * **transformation robustness**: the model sees a randomly jittered, scaled and rotated copy
      of the image at every step, so a pattern only pays off if it survives small shifts;
    * **preconditioning**: optimizing in a decorrelated space, a Fourier basis scaled by 1/f
      with ImageNet's colour correlations factored out, so that every frequency and colour
      direction moves at the same pace instead of the high frequencies winning.

    This notebook reproduces that comparison on one channel of EfficientNet-Lite0, taking
    snapshots during optimization with `render`'s `thresholds` and measuring each picture twice:
    the channel's **activation** (on the picture itself, without transforms) and its
    **high-frequency energy** (`fv.metrics.high_frequency_energy`: the share of the image's
    spectral energy above half the Nyquist frequency; natural photos score a few percent).
    """),
    code(FAST_SWITCH, """
    SIZE = 64 if FAST else 128
    STEPS = 16 if FAST else 512
    THRESHOLDS = [1, 4, 8] if FAST else [8, 32, 128]  # snapshot steps; the final image is added
    """),
    code("""
    import matplotlib.pyplot as plt
    import torch

    import captum_fv as fv
    from captum_fv import objectives as obj

    fv.tune_cpu_allocator()  # big batches on a Linux CPU without page-fault storms (README)

    model = fv.models.efficientnet_lite0()
    LAYER, CHANNEL = "_blocks.8", 4
    unit = obj.channel(LAYER, CHANNEL)
    """),
    md("""
    ## Reference points

    What do natural images score? The photos bundled with captum-fv put a few percent of their
    energy above the cutoff, white noise about 80%. The channel we study (channel 4 of
    `_blocks.8`) is a spatial mean over the whole map, and on whole photos it stays around zero:
    its feature, if present at all, covers a small part of them.
    """),
    code("""
    photos = torch.stack([image for image, _ in fv.data.sample_images(size=SIZE)])
    photo_hf = fv.metrics.high_frequency_energy(photos)
    photo_act = fv.channel(CHANNEL)(fv.activations(model, LAYER, photos))
    print(f"photos:      HF energy {photo_hf.mean():.3f} (max {photo_hf.max():.3f}), "
          f"channel {CHANNEL} activation up to {photo_act.max():.1f}")
    noise = torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    print(f"white noise: HF energy {fv.metrics.high_frequency_energy(noise).mean():.3f}")
    """),
    md("""
    ## Seven ways to optimize the same channel

    Every setting starts from the same seed and takes the same number of Adam steps; only the
    parameterization, the transforms and the penalty change.

    * `fv.param.image(SIZE, fft=False, decorrelate=False)` is a plain pixel image (each pixel a
      free parameter, squashed into [0, 1] by a sigmoid); the default `fv.param.image(SIZE)` is
      the decorrelated Fourier parameterization.
    * `transforms=[]` switches the transforms off; `fv.transforms.standard(SIZE)` is the
      default stack (pad, jitter, scale, rotate, jitter).
    * Penalties are objectives too, subtracted with a weight. The weights below are strong
      enough to change the picture visibly while the channel stays high; they are not tuned to
      make any setting look good.
    """),
    code("""
    W_L1, W_TV, W_BLUR = 400.0, 200.0, 5000.0
    robust = fv.transforms.standard(SIZE)


    def pixels():
        return fv.param.image(SIZE, fft=False, decorrelate=False)


    settings = {
        "pixels": dict(objective=unit, param=pixels(), transforms=[]),
        "pixels + L1": dict(objective=unit - W_L1 * obj.l1(), param=pixels(), transforms=[]),
        "pixels + total variation": dict(
            objective=unit - W_TV * obj.total_variation(), param=pixels(), transforms=[]),
        "pixels + blur": dict(objective=unit - W_BLUR * obj.blur(), param=pixels(), transforms=[]),
        "pixels + transforms": dict(objective=unit, param=pixels(), transforms=robust),
        "decorrelated": dict(objective=unit, param=fv.param.image(SIZE), transforms=[]),
        "decorrelated + transforms": dict(objective=unit, param=fv.param.image(SIZE), transforms=robust),
    }

    results = {
        name: fv.render(model, s["objective"], param=s["param"], transforms=s["transforms"],
                        steps=STEPS, thresholds=THRESHOLDS, seed=0)
        for name, s in settings.items()
    }
    """),
    md("""
    ## Measure every snapshot

    `result.snapshots` maps a step to the images at that step (the final images are under
    `STEPS`). The activation is read with the same selector Captum would use,
    `fv.channel(CHANNEL)`, on the output of `fv.activations`, which stops the forward pass at the
    layer.
    """),
    code("""
    steps = sorted(next(iter(results.values())).snapshots)
    measured = {}
    for name, result in results.items():
        images = torch.cat([result.snapshots[s] for s in steps])
        activation = fv.channel(CHANNEL)(fv.activations(model, LAYER, images))
        hf = fv.metrics.high_frequency_energy(images)
        measured[name] = (images, activation, hf)

    fig, axes = plt.subplots(len(results), len(steps), figsize=(2.1 * len(steps) + 1.6, 2.45 * len(results)),
                             squeeze=False)
    for row, (name, (images, activation, hf)) in zip(axes, measured.items()):
        for ax, step, image, a, h in zip(row, steps, images, activation, hf):
            ax.imshow(image.permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"act {a:.1f}   HF {h:.2f}", fontsize=8)
        row[0].set_ylabel(name, fontsize=9)
    for ax, step in zip(axes[0], steps):
        ax.set_title(f"step {step}", fontsize=9)
    fig.tight_layout()
    plt.show()
    """),
    code("""
    print(f"{'setting':28s} {'activation':>10s} {'HF energy':>10s}")
    for name, (images, activation, hf) in measured.items():
        print(f"{name:28s} {activation[-1]:10.1f} {hf[-1]:10.3f}")
    print(f"{'(natural photos)':28s} {photo_act.max():10.1f} {photo_hf.mean():10.3f}")
    """),
    md("""
    ## What the grid shows

    The numbers quoted here are from a run with the full settings (128 px, 512 steps).

    * **Plain pixels** climb to the highest activation of all (about 57), far above anything
      the photos reach, and the picture is a fine mesh of coloured lines with half of its energy
      above the cutoff, more than ten times the share in a photo. The mesh runs diagonally, a
      hint of what the channel likes, but there is no feature one could name.
    * **L1** pulls pixels back towards grey: the mesh loses contrast but stays, and its *share*
      of high-frequency energy even grows (about 0.6). L1 is blind to frequencies.
    * **Total variation** and **blur** do target high frequencies: they bring the energy above
      the cutoff down to about 0.15, the lowest of all. Yet the picture is a smoothed version of
      the same mesh and the activation stays above 50: they remove noise and detail alike
      without steering the optimizer towards the feature.
    * **Transformation robustness** on plain pixels is the first setting with a recognizable
      feature: diagonal stripes carrying rows of dots. A pattern only pays off if it survives
      shifts, scales and rotations, which costs activation (about 42); colour fringes and
      pixel-level noise remain.
    * **Decorrelated** alone (Fourier + colour, no transforms) changes the order in which
      things appear: smooth, coloured strokes first, fine detail later. Left alone it still ends
      near the plain-pixel activation (about 56) by piling up crossing lines and fine detail, and
      its high-frequency energy rises over the run (about 0.23 to 0.31).
    * **Decorrelated + transforms**, captum-fv's default, gives the cleanest picture of the same
      feature, diagonal stripes with rows of dots, at the lowest activation of the seven (about
      40). Its high-frequency energy (about 0.2) is still well above a photo's: what is left is
      the fine detail of the feature itself (thin stripes, small dots), not a pixel-level mesh.

    Two lessons. A higher activation is not a better visualization: the unregularized optimum is
    *adversarial*. And a low high-frequency energy is not one either: total variation and blur
    score lowest and show nothing. What works is constraining the *search*, through the
    parameterization and transformation robustness, so that the optimizer stays among images
    that look natural to begin with.
    """),
    code("""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (images, activation, hf) in measured.items():
        line, = ax.plot(hf.numpy(), activation.numpy(), marker="o", markersize=3, label=name)
        ax.plot(hf[-1:].numpy(), activation[-1:].numpy(), marker="o", markersize=8, color=line.get_color())
    ax.axvline(photo_hf.mean(), color="grey", linestyle="--", label="natural photos")
    ax.set_xlabel("high-frequency energy")
    ax.set_ylabel(f"channel {CHANNEL} activation")
    ax.set_title("each curve: the snapshots of one setting (large dot: final image)", fontsize=9)
    ax.legend(fontsize=7)
    plt.show()
    """),
]

# --------------------------------------------------------------------------------------------
# 3. Diversity and interaction
# --------------------------------------------------------------------------------------------

DIVERSITY: List[Cell] = [
    md("""
    # Beyond one picture per unit: diversity, negative optima and interactions

    A single optimized image shows *one* input that excites a unit, usually the most extreme
    one. Units are rarely that simple: many respond to several different things, and what turns
    them *off* is as telling as what turns them on. Units also work together, and the
    coordinate axes of a layer (its channels) are not special: other directions in activation
    space can be just as meaningful.

    This tutorial uses one mid-level layer of EfficientNet-Lite0, `_blocks.8`, to show

    1. **diversity**: several *facets* of one channel, pushed apart by a Gram-matrix
       similarity penalty;
    2. **negative optima**: images that drive a channel as low as it goes;
    3. **joint optimization**: the sum (and difference) of two channel objectives;
    4. **interpolation**: a sweep from one channel to another, kept coherent by a shared
       parameterization and an alignment cost;
    5. **random directions** in activation space.
    """),
    code(FAST_SWITCH, """
    SIZE = 64 if FAST else 128
    STEPS = 8 if FAST else 256
    FACETS = 2 if FAST else 4          # diversity facets per unit
    FRAMES = 3 if FAST else 6          # interpolation frames
    N_DIRECTIONS = 2 if FAST else 4    # random directions
    """),
    code("""
    import matplotlib.pyplot as plt
    import torch

    import captum_fv as fv
    from captum_fv import objectives as obj

    fv.tune_cpu_allocator()  # big batches on a Linux CPU without page-fault storms (README)

    model = fv.models.efficientnet_lite0()
    LAYER = "_blocks.8"
    """, "", "", SHOW, """

    def channel_values(images, *channels):
        \"\"\"Each channel's mean activation on each image, as a (len(channels), N) tensor.\"\"\"
        acts = fv.activations(model, LAYER, images)
        return torch.stack([fv.channel(c)(acts) for c in channels])
    """),
    md("""
    ## 1. Diversity

    `NeuronVisualization.visualize(unit, facets=n)` optimizes `n` extra images of the unit in the
    same batch, with an extra term that rewards them for being *different*. Difference is
    measured on the layer's Gram matrix (channel-by-channel correlations, pooled over
    positions), which describes what kind of texture the layer sees regardless of where: two
    facets with the same Gram matrix are the same facet drawn twice. Written as an objective it
    is `obj.channel(LAYER, unit) + w * obj.diversity(LAYER)`; `NeuronVisualization` scales `w` to
    the layer's activations for you, and `negative=True` adds the negative optimum to the batch.
    """),
    code("""
    UNIT = 15
    viz = fv.NeuronVisualization(model, LAYER)
    v = viz.visualize(UNIT, facets=FACETS, negative=True, size=SIZE, steps=STEPS)

    act = v.activation
    show(
        torch.cat([v.positive, v.facets, v.negative]),
        [f"positive\\n{act['positive'][0]:.1f}"]
        + [f"facet {i + 1}\\n{a:.1f}" for i, a in enumerate(act["facets"])]
        + [f"negative\\n{act['negative'][0]:.1f}"],
        suptitle=f"{LAYER}, channel {UNIT}: activation under each image",
    )
    """),
    md("""
    Are the facets really more different from each other than what random restarts give? Render
    the same channel from `FACETS` random starting points without the diversity term, and
    compare the mean pairwise Gram similarity (`obj.similarity`, 1 = same texture statistics)
    in both batches.
    """),
    code("""
    restarts = fv.render(model, obj.channel(LAYER, UNIT), size=SIZE, steps=STEPS, batch=FACETS)


    def mean_similarity(images):
        sim = obj.similarity(fv.activations(model, LAYER, images))
        n = len(images)
        return ((sim.sum() - sim.diagonal().sum()) / (n * (n - 1))).item()


    print(f"random restarts: Gram similarity {mean_similarity(restarts.images):.3f}, "
          f"activation {channel_values(restarts.images, UNIT).mean():.1f}")
    print(f"diverse facets:  Gram similarity {mean_similarity(v.facets):.3f}, "
          f"activation {channel_values(v.facets, UNIT).mean():.1f}")
    show(torch.cat([restarts.images, v.facets]),
         [f"restart {i + 1}" for i in range(FACETS)] + [f"facet {i + 1}" for i in range(FACETS)],
         ncols=FACETS)
    """),
    md("""
    With the full settings, channel 15 responds to eye-like spots set in feather- or fur-like
    strands. The four restarts are variations of that one picture (Gram similarity about 0.92).
    The facets shift the balance between its ingredients: some are mostly strands, others mostly
    spots and scale patterns, and their similarity drops to about 0.73 while the activation
    barely moves (about 30 in both batches). Raise `diversity_weight=` in `visualize` to push the
    facets further apart, at a growing cost in activation.

    ## 2. Negative optima

    Objectives are always maximized in captum-fv, so the negative optimum of a unit is simply
    the optimum of `-obj.channel(...)`: the image that pushes the channel as far below zero as
    it goes. `negative=True` does that in the same batch as the positive optimum. The pairs
    below are often more telling than the positive optimum alone.
    """),
    code("""
    PAIR_UNITS = [3, 4]
    pairs = viz.visualize(PAIR_UNITS, negative=True, size=SIZE, steps=STEPS)
    show(
        torch.cat([torch.cat([r.positive, r.negative]) for r in pairs]),
        [t for r in pairs for t in (f"{r.name} +\\n{r.activation['positive'][0]:.1f}",
                                    f"{r.name} -\\n{r.activation['negative'][0]:.1f}")],
        ncols=4,
    )
    """),
    md("""
    With the full settings: channel 3 likes rounded, overlapping, colourful scales, and its
    negative optimum is long curved bands of feather-like stripes. Channel 4 likes thin straight
    stripes carrying rows of bright dots (the channel of the *Regularization* tutorial), and is
    driven lowest by large, smooth, grey round blobs without any straight line.

    ## 3. Joint optimization

    Objectives add up. `obj.channel(LAYER, A) + obj.channel(LAYER, B)` asks for an image that
    excites both channels at once, and the optimizer has to find a way to fit both features in
    one picture; `A - B` asks for A's feature *without* B's. The numbers under each image are the
    two channels' activations on it.
    """),
    code("""
    A, B = 3, 4
    combinations = {
        f"channel {A}": obj.channel(LAYER, A),
        f"channel {B}": obj.channel(LAYER, B),
        f"{A} + {B}": obj.channel(LAYER, A) + obj.channel(LAYER, B),
        f"{A} - {B}": obj.channel(LAYER, A) - obj.channel(LAYER, B),
    }
    joint = torch.cat([fv.render(model, o, size=SIZE, steps=STEPS).images for o in combinations.values()])
    values = channel_values(joint, A, B)
    show(joint, [f"{name}\\n{A}: {a:.1f}  {B}: {b:.1f}" for name, a, b in zip(combinations, *values)])
    """),
    md("""
    Each channel alone leaves the other near or below zero. The sum finds a compromise that
    excites both about equally (in our full run about 25 each, against about 40 and 36 alone):
    arcs of channel 3's scales drawn with channel 4's dotted stripes. The difference keeps
    channel 3's scales and paints them with the smooth grey blobs of channel 4's negative
    optimum, driving channel 4 strongly negative.
    """),
    md("""
    ## 4. Interpolating between two channels

    `obj.channel_interpolate(LAYER, A, B)` gives each of the batch's `n` images its own target:
    image `i` maximizes `(1 - t) * A + t * B` with `t = i / (n - 1)`, from pure A to pure B.
    Optimized independently, neighbouring frames would look unrelated. Two things make the
    sweep read as one image morphing:

    * `fv.param.image(SIZE, batch=n, shared=True)` adds a component common to every frame;
    * `obj.alignment(LAYER)` is a cost on how much each frame's activations differ from its
      neighbours'; we subtract it.
    """),
    code("""
    W_ALIGN = 0.1   # much larger (try 1.0) and every frame freezes into the same compromise
    frames = fv.render(
        model,
        obj.channel_interpolate(LAYER, A, B) - W_ALIGN * obj.alignment(LAYER),
        param=fv.param.image(SIZE, batch=FRAMES, shared=True),
        steps=STEPS,
    )
    values = channel_values(frames.images, A, B)
    t = torch.linspace(0, 1, FRAMES)
    show(frames.images, [f"t = {ti:.2f}\\n{A}: {a:.1f}  {B}: {b:.1f}" for ti, a, b in zip(t, *values)])
    """),
    md("""
    Along the sweep channel A's activation falls and channel B's rises (in our full run from
    about 37 to 2, and from about -1 to 34), while the shared component and the alignment cost
    keep the layout of neighbouring frames alike: the same arcs turn from scales into dotted
    stripes in place.

    ## 5. Random directions

    A channel is one basis direction of the layer's activation space. The Distill article found
    that random directions are often just as interpretable as basis directions: features are not
    necessarily aligned with channels. `obj.random_direction(LAYER, seed=s)` maximizes the
    projection of the activation onto a seeded random unit vector over the layer's 112
    channels.

    Several objectives can share one batch: `batch=i` sends an objective to image `i` only, so
    the sum below optimizes `N_DIRECTIONS` directions in one render.
    """),
    code("""
    directions = [obj.random_direction(LAYER, seed=s, batch=s) for s in range(N_DIRECTIONS)]
    random_result = fv.render(model, sum(directions), size=SIZE, steps=STEPS, batch=N_DIRECTIONS)

    titles = []
    for s, d in enumerate(directions):
        weights = d.direction["d"]  # the unit vector drawn for this seed
        top = weights.abs().topk(3).indices.tolist()
        titles.append(f"seed {s}\\n" + " ".join(f"{weights[c]:+.2f}·c{c}" for c in top))
    show(random_result.images, titles, suptitle="random directions (largest channel weights below)")
    """),
    md("""
    Each direction mixes all 112 channels with weights of a few tenths at most, yet the pictures
    look as coherent as single-channel ones: a reminder to treat channels as one convenient
    basis, not as *the* units of meaning.
    """),
]

# --------------------------------------------------------------------------------------------
# 4. Adding feature visualization to a Captum workflow
# --------------------------------------------------------------------------------------------

CAPTUM_WORKFLOW: List[Cell] = [
    md("""
    # Adding feature visualization to a Captum workflow

    You already explain predictions with Captum: you run Integrated Gradients on a photo and get
    a heat map over its pixels. The heat map says *where* the evidence is, not *what* the network
    saw there. This tutorial adds that missing step to an ordinary Captum workflow:

    1. **the workflow you have**: a prediction and its `IntegratedGradients` attribution;
    2. **pick the units that matter**: Captum's `LayerActivation` and
       `LayerIntegratedGradients` on a middle layer tell which channels are most active on this
       photo and which carry the prediction;
    3. **look at those units**: `NeuronVisualization` (what maximizes each channel),
       `DatasetExamples` (which natural images maximize it) and Integrated Gradients of the
       channel on those examples (which pixels drive it);
    4. **put it in a report**: `NeuronReport` does all of step 3 for a list of units and writes
       an HTML page.

    One object ties the steps together: the selector `fv.channel(c)`. It is an ordinary callable
    from a layer's output to one value per example, so Captum's `Neuron*` methods accept it as
    `neuron_selector`, and captum-fv's visualization, mining and attribution accept it as the unit.
    """),
    code(FAST_SWITCH, """
    SIZE = 64 if FAST else 128         # optimized images and dataset examples
    STEPS = 8 if FAST else 256         # optimization steps
    N_STEPS = 8 if FAST else 32        # Integrated Gradients steps
    N_UNITS = 2 if FAST else 3         # channels to look at
    CROPS = 2 if FAST else 24          # random crops per bundled photo for the example dataset
    K = 3 if FAST else 6               # dataset examples per unit
    """),
    code("""
    import tempfile
    from pathlib import Path

    import matplotlib.pyplot as plt
    import torch
    from captum.attr import (IntegratedGradients, LayerActivation, LayerAttribution,
                             LayerIntegratedGradients, NeuronIntegratedGradients)
    from captum.attr import visualization as captum_viz

    import captum_fv as fv
    from captum_fv.attribution import attribute, overlay
    from captum_fv.mining import DatasetExamples
    from captum_fv.report import NeuronReport

    fv.tune_cpu_allocator()  # big batches on a Linux CPU without page-fault storms (README)

    """, "", "", SHOW),
    md("""
    ## 1. The workflow you already have

    A model, a photo, its predicted class and an Integrated Gradients attribution for that
    class, visualized with Captum's own `visualize_image_attr_multiple`. captum-fv's models take
    RGB in [0, 1] and normalize inside, so the photo goes in as it is.
    """),
    code("""
    model = fv.models.efficientnet_lite0()
    labels = fv.models.imagenet_labels()

    photo = fv.data.sample_images(size=224)[1][0]   # Chelsea the cat, (3, 224, 224) in [0, 1]
    x = photo[None]
    with torch.no_grad():
        probs = model(x).softmax(1)[0]
    pred = int(probs.argmax())
    print(f"predicted: {labels[pred]} ({probs[pred]:.2f})")

    ig = IntegratedGradients(model)
    attr, delta = ig.attribute(x, target=pred, n_steps=N_STEPS, return_convergence_delta=True)
    print(f"convergence delta {delta.item():.3f}")

    _ = captum_viz.visualize_image_attr_multiple(
        attr[0].permute(1, 2, 0).numpy(), photo.permute(1, 2, 0).numpy(),
        methods=["original_image", "blended_heat_map"], signs=["all", "absolute_value"],
        titles=["photo", f"IG for '{labels[pred]}'"], fig_size=(7, 3.5),
    )
    """),
    md("""
    ## 2. Pick the units that matter

    Choose a middle layer and ask Captum two questions about it on this photo:

    * `LayerActivation`: how strongly is each channel active (mean over positions)?
    * `LayerIntegratedGradients`: how much of the predicted logit flows through each channel
      (the attributions summed over the channel's positions)?

    A channel can contribute to the logit even while it is mostly *off* on the photo (by being
    less negative than on the black baseline), which makes for a confusing first example. We
    keep the channels that are on in this photo (positive mean activation) and, among them,
    take those that contribute most to the prediction.

    The layer is the module object Captum wants; captum-fv accepts the same object (or its name,
    `"_blocks.8"`) everywhere.
    """),
    code("""
    LAYER = "_blocks.8"
    layer = model.get_submodule(LAYER)

    layer_acts = LayerActivation(model, layer).attribute(x)                # (1, 112, 14, 14)
    activation = layer_acts[0].mean((1, 2))                                # (112,)
    contribution = LayerIntegratedGradients(model, layer).attribute(
        x, target=pred, n_steps=N_STEPS)[0].sum((1, 2))                    # (112,)

    score = torch.where(activation > 0, contribution, torch.tensor(float("-inf")))
    top = score.topk(N_UNITS).indices.tolist()
    units = [fv.channel(c) for c in top]
    print("active channels carrying the prediction:", top)
    print("their contribution:", [round(contribution[c].item(), 2) for c in top])
    print("their mean activation on the photo:", [round(activation[c].item(), 2) for c in top])

    order = contribution.argsort(descending=True)[:10]
    fig, axes = plt.subplots(1, 2, figsize=(10, 2.8))
    axes[0].bar(range(len(order)), contribution[order].detach().numpy())
    axes[0].set_xticks(range(len(order)), [str(c) for c in order.tolist()])
    axes[0].set_title(f"LayerIntegratedGradients per channel (top 10) for '{labels[pred]}'", fontsize=9)
    axes[1].bar(range(len(order)), activation[order].detach().numpy(), color="tab:orange")
    axes[1].set_xticks(range(len(order)), [str(c) for c in order.tolist()])
    axes[1].set_title("LayerActivation (mean) of the same channels", fontsize=9)
    fig.tight_layout()
    plt.show()
    """),
    md("""
    Where on the photo are these channels on? Two Captum views: the channel's activation map,
    upsampled to the photo with `LayerAttribution.interpolate`, and `NeuronIntegratedGradients`
    with our selector (a plain Captum `neuron_selector`), which attributes the channel's mean
    to the photo's pixels. Pixel-level Integrated Gradients is speckled, as the class heat map
    above; the activation map is coarse (one value per 16x16 pixels) but easier to read.
    """),
    code("""
    maps = LayerAttribution.interpolate(layer_acts[:, top], tuple(photo.shape[-2:]), "bilinear")[0]
    neuron_ig = NeuronIntegratedGradients(model, layer)

    fig, axes = plt.subplots(2, N_UNITS, figsize=(2.8 * N_UNITS, 5.8), squeeze=False)
    for j, sel in enumerate(units):
        unit_ig = neuron_ig.attribute(x, neuron_selector=sel, n_steps=N_STEPS)
        axes[0, j].imshow(photo.permute(1, 2, 0).numpy())
        axes[0, j].imshow(maps[j].detach().numpy(), cmap="magma", alpha=0.6)
        axes[0, j].set_title(f"{sel}: activation map", fontsize=8)
        axes[1, j].imshow(overlay(photo, unit_ig[0]).permute(1, 2, 0).numpy())
        axes[1, j].set_title(f"{sel}: NeuronIntegratedGradients", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    plt.show()
    """),
    md("""
    ## 3. What are these channels?

    **Optimized images.** `NeuronVisualization(model, layer)` has Captum's constructor shape
    (forward function, layer) and takes the same selectors; a list is optimized in one batch.
    """),
    code("""
    visualizations = fv.NeuronVisualization(model, layer).visualize(units, size=SIZE, steps=STEPS)
    show(torch.cat([v.positive for v in visualizations]),
         [f"{v.name}\\nactivation {v.activation['positive'][0]:.1f}" for v in visualizations])
    """),
    md("""
    **Dataset examples.** An optimized image can exaggerate; natural images that excite the same
    unit keep us honest. `DatasetExamples.collect` makes one pass over a dataset (here random
    crops of the photos bundled with captum-fv; use your own with `fv.data.image_folder`) and
    keeps the top and bottom examples of every unit.

    **Attribution on those examples.** `captum_fv.attribution.attribute` runs Captum's
    `NeuronIntegratedGradients` with the same selector on the top examples, and `overlay` draws
    the result the way Captum's blended heat map does. Together they show *which part* of each
    example the channel responds to.
    """),
    code("""
    dataset = fv.data.sample_images(size=SIZE, crops=CROPS)
    examples = DatasetExamples(model, layer).collect(dataset, k=K, units=units, progress=False)

    for sel in units:
        images = examples.images(sel)
        result = attribute(model, layer, sel, images, n_steps=N_STEPS)
        acts = examples.top(sel).activations
        show(
            torch.cat([images, overlay(images, result.attributions)]),
            [f"{a:.1f}" for a in acts] + [f"rel. delta {d:.2f}" for d in result.relative_delta],
            ncols=K,
            suptitle=f"{sel}: top {K} of {len(dataset)} examples, and Integrated Gradients of the channel",
        )
    """),
    md("""
    The bundled dataset is small (eight photos, cut into random crops), so a unit's top examples
    are often crops of one photo; with your own images (`fv.data.image_folder`) they vary more.
    Read the activation map, the optimized image, the examples and the attribution together.
    In our full-settings run the three channels are 38, 96 and 100. Channel 96 is on around the
    cat's eyes; its optimized image is full of eye-like spots set in swirling fur, and its top
    examples are crops of the cat's face and one dahlia, whose concentric petals repeat the same
    rounded shapes. Channel 38 draws a granular, pebble-like texture; its top examples are crops
    of a motorcycle in a garage, Integrated Gradients puts its weight on the speckled concrete
    floor rather than on the motorcycle, and its bottom examples (in the report below) are
    smooth, dark, textureless areas.

    The relative delta under each overlay is Integrated Gradients' completeness check for the
    channel: |sum of attributions - (f(example) - f(baseline))| / |f(example) - f(baseline)|.
    A few percent means the integral has converged; raise `n_steps` if it is larger.

    ## 4. All of it, as a report

    `NeuronReport` runs steps 3's three parts for a list of units (adding diversity facets, the
    negative optimum, optimization snapshots and bottom examples), `report.figure(unit)` draws
    one unit in the notebook, and `save` writes a browsable HTML report with every number in
    `report.json`.
    """),
    code("""
    report = NeuronReport(
        model, layer, dataset, size=SIZE, steps=STEPS, facets=2, k=K,
        attribution_kwargs={"n_steps": N_STEPS}, progress=False,
    ).build(units)

    report.figure(units[0])
    plt.show()

    index = report.save(Path(tempfile.mkdtemp(prefix="captum_fv_workflow_")) / "report")
    print("open in a browser:", index)
    """),
]

# --------------------------------------------------------------------------------------------
# 5. Auditing your own model
# --------------------------------------------------------------------------------------------

AUDITING: List[Cell] = [
    md("""
    # Auditing your own model

    The other tutorials use the EfficientNet-Lite0 that ships with captum-fv. This one shows how
    to point captum-fv at **your** model and **your** images:

    * any `torchvision.models` architecture with weights from a local checkpoint file
      (`fv.models.torchvision_model(name, weights=path)`; nothing is ever downloaded);
    * a folder of your images (`fv.data.image_folder`);
    * the command line (`captum-fv layers`, `captum-fv report`);
    * the same from Python (`NeuronReport(...).run(...)`, `report.figure(unit)`).

    So that the notebook runs anywhere, it *creates* a checkpoint by saving a randomly
    initialised ResNet-18, and fills a folder with the sample photos bundled with captum-fv.
    Replace both paths with your own: a `state_dict` saved with
    `torch.save(model.state_dict(), path)` (a dict holding it under `"state_dict"` or `"model"`
    works too) and a folder of images, flat or with one subfolder per class.
    """),
    code(FAST_SWITCH, """
    SIZE = 64 if FAST else 128
    STEPS = 8 if FAST else 256
    FACETS = 1 if FAST else 2
    K = 3 if FAST else 6
    CROPS = 1 if FAST else 8
    UNITS = "0-1" if FAST else "0-2"     # channels, in the CLI's syntax
    """),
    code("""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import matplotlib.pyplot as plt
    import torch
    import torchvision

    import captum_fv as fv
    from captum_fv.report import NeuronReport

    fv.tune_cpu_allocator()  # big batches on a Linux CPU without page-fault storms (README)

    """, "", "", SHOW),
    md("""
    ## A checkpoint and a folder of images

    Stand-ins for your own files, in a temporary folder.
    """),
    code("""
    WORK = Path(tempfile.mkdtemp(prefix="captum_fv_audit_"))

    # Your checkpoint: here, an untrained ResNet-18 (seeded, so the notebook reproduces).
    WEIGHTS = WORK / "my_resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), WEIGHTS)

    # Your images: here, the photos bundled with captum-fv, written out as JPEG files.
    PHOTOS = WORK / "my_photos"
    PHOTOS.mkdir()
    bundled = fv.data.sample_images(size=256)
    for (image, label), name in zip(bundled, bundled.names):
        torchvision.utils.save_image(image, PHOTOS / f"{name}.jpg")
    print(sorted(p.name for p in PHOTOS.iterdir()))
    """),
    md("""
    ## Load them

    `torchvision_model` builds the architecture by name, loads the state dict (refusing, with an
    explanation, a checkpoint of another architecture) and wraps the model so that it takes RGB
    in [0, 1], normalizing with the ImageNet statistics inside. If your model was trained with
    other statistics, or is not a torchvision model, wrap it yourself with
    `fv.models.with_preprocessing(model, mean, std)`. Layer names stay torchvision's.

    `image_folder` reads the images lazily; `crops=n` turns each image into `n` random crops,
    which gives dataset-example mining more to choose from.
    """),
    code("""
    model = fv.models.torchvision_model("resnet18", weights=WEIGHTS)
    dataset = fv.data.image_folder(PHOTOS, size=SIZE, crops=CROPS)
    print(dataset)
    show([dataset[i][0] for i in range(0, len(dataset), max(1, len(dataset) // 6))][:6],
         [name.split(" (")[0] for name in dataset.names[::max(1, len(dataset) // 6)][:6]])
    """),
    md("""
    ## The command line

    `captum-fv layers` lists every layer with its output shape, which is where the layer names
    for `--layer` come from. From a terminal you would type
    `captum-fv layers --model torchvision:resnet18 --weights my_resnet18.pth`; in a notebook
    `!captum-fv ...` works too. Here we call it with the notebook's own Python, which is
    equivalent and independent of your `PATH`.

    ResNet applies one `relu` module several times per block; captum-fv marks such layers and
    asks for one call, `layer1.0.relu#1` being the second.
    """),
    code("""
    def captum_fv_cli(*args):
        \"\"\"Run `captum-fv ARGS...` with this notebook's Python and return what it printed.\"\"\"
        run = subprocess.run([sys.executable, "-m", "captum_fv", *map(str, args)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(run.stderr)
        return run.stdout


    listing = captum_fv_cli("layers", "--model", "torchvision:resnet18", "--weights", WEIGHTS,
                            "--size", SIZE)
    lines = listing.splitlines()
    print("\\n".join(lines[:8] + ["..."] + [line for line in lines if line.startswith("layer3.")]))
    """),
    md("""
    `captum-fv report` builds a neuron report: for each unit, its optimized image, diversity
    facets, negative optimum, the images of `--data` that excite it most and least, and
    Integrated Gradients on the top ones. Everything lands in `--out` (`index.html` plus one
    folder per unit and a `report.json`); `--resume` keeps the units already finished when you
    extend a report or rerun an interrupted one.
    """),
    code("""
    LAYER = "layer3.1"
    cli_out = WORK / "cli_report"
    print(captum_fv_cli(
        "report", "--model", "torchvision:resnet18", "--weights", WEIGHTS, "--layer", LAYER,
        "--units", UNITS, "--data", PHOTOS, "--size", SIZE, "--steps", STEPS,
        "--facets", FACETS, "--k", K, "--out", cli_out, "--quiet",
    ))
    print(sorted(p.name for p in cli_out.iterdir()))
    """),
    md("""
    ## The same from Python

    `NeuronReport(model, layer, dataset, ...)` takes the same settings as the command line;
    `run(units, out_dir)` builds and writes the units one by one, and `figure(unit)` draws a
    built unit here.
    """),
    code("""
    from captum_fv.cli import parse_units

    units = parse_units(UNITS)
    report = NeuronReport(model, LAYER, dataset, size=SIZE, steps=STEPS, facets=FACETS, k=K,
                          model_name="resnet18 (my checkpoint)", progress=False)
    index = report.run(units, WORK / "api_report")
    print("open in a browser:", index)

    report.figure(units[0])
    plt.show()
    """),
    md("""
    ## Reading an audit

    This checkpoint is untrained, and the report shows it: channel 0's optimized image is a
    patch of saturated colour blotches and fine speckle with no recognizable shape or texture,
    its facets are near copies of it, and its top and bottom dataset examples differ in colour
    and contrast rather than in content. (Its negative optimum cannot go below zero: `layer3.1`
    ends with a ReLU.) A random unit is a colour and contrast detector with nothing else to
    show. That is itself a useful sanity check.
    If the units of a model you trained look like this, suspect the checkpoint (wrong file, keys
    not loaded, a different preprocessing) before the method.

    With a trained checkpoint, look for units whose optimized image, facets and top examples
    agree on a concept, for units that respond to something they should not (watermarks,
    backgrounds, artefacts of your data collection), and compare the activation reached by the
    optimized image with the best dataset example (the ratio in the figure title): a very large
    ratio means the unit responds far more strongly to something your images never contain.
    """),
]

# --------------------------------------------------------------------------------------------
# Registry of notebooks
# --------------------------------------------------------------------------------------------

NOTEBOOKS: Dict[str, List[Cell]] = {
    "EfficientNet_FeatureViz_GettingStarted.ipynb": GETTING_STARTED,
    "EfficientNet_FeatureViz_Regularization.ipynb": REGULARIZATION,
    "EfficientNet_FeatureViz_DiversityAndInteraction.ipynb": DIVERSITY,
    "EfficientNet_FeatureViz_CaptumWorkflow.ipynb": CAPTUM_WORKFLOW,
    "Auditing_Your_Own_Model.ipynb": AUDITING,
}


def build(cells: List[Cell]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nb.cells = [new_markdown_cell(src) if kind == "markdown" else new_code_cell(src) for kind, src in cells]
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"  # stable ids: rebuilding gives identical files
    nbformat.validate(nb)
    return nb


def execute(out_dir: Path, names: List[str]) -> None:
    """Run notebooks with the current environment's settings (unset CAPTUM_FV_FAST for the full
    ones) and write the executed copies and every figure as PNG to ``out_dir``."""
    import base64
    import time

    from nbclient import NotebookClient

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names or list(NOTEBOOKS):
        nb = nbformat.read(HERE / name, as_version=4)
        run_dir = out_dir / Path(name).stem
        run_dir.mkdir(exist_ok=True)
        start = time.perf_counter()
        NotebookClient(nb, timeout=None, resources={"metadata": {"path": str(run_dir)}}).execute()
        print(f"{name}: {time.perf_counter() - start:.0f} s")
        nbformat.write(nb, run_dir / name)
        for i, cell in enumerate(nb.cells):
            for j, output in enumerate(cell.get("outputs", [])):
                png = output.get("data", {}).get("image/png")
                if png:
                    (run_dir / f"cell{i:02d}_{j}.png").write_bytes(base64.b64decode(png))


def main(argv: List[str]) -> int:
    if argv[:1] == ["--execute"]:
        execute(Path(argv[1]), argv[2:])
        return 0
    check = "--check" in argv
    stale = []
    for name, cells in NOTEBOOKS.items():
        text = nbformat.writes(build(cells)) + "\n"
        path = HERE / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print("out of date (run python tutorials/_build.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
