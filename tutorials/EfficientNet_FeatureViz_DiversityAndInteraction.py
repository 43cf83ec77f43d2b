# %% [markdown]
# # Beyond one picture per unit: diversity, negative optima and interactions
#
# A single optimized image shows *one* input that excites a unit, usually the most extreme
# one. Units are rarely that simple: many respond to several different things, and what turns
# them *off* is as telling as what turns them on. Units also work together, and the
# coordinate axes of a layer (its channels) are not special: other directions in activation
# space can be just as meaningful.
#
# This tutorial uses one mid-level layer of EfficientNet-Lite0, `_blocks.8`, to show
#
# 1. **diversity**: several *facets* of one channel, pushed apart by a Gram-matrix
#    similarity penalty;
# 2. **negative optima**: images that drive a channel as low as it goes;
# 3. **joint optimization**: the sum (and difference) of two channel objectives;
# 4. **interpolation**: a sweep from one channel to another, kept coherent by a shared
#    parameterization and an alignment cost;
# 5. **random directions** in activation space.

# %%
import os

# CAPTUM_FV_FAST=1 runs everything with tiny settings (a smoke test: the pictures are meaningless).
# Leave it unset for the settings that give the pictures described in the text.
FAST = os.environ.get("CAPTUM_FV_FAST", "0") == "1"
SIZE = 64 if FAST else 128
STEPS = 8 if FAST else 256
FACETS = 2 if FAST else 4  # diversity facets per unit
FRAMES = 3 if FAST else 6  # interpolation frames
N_DIRECTIONS = 2 if FAST else 4  # random directions

# %%
import torch

import captum_fv as fv
from captum_fv import objectives as obj

fv.tune_cpu_allocator()  # big batches on a Linux CPU without page-fault storms (README)

model = fv.models.efficientnet_lite0()
LAYER = "_blocks.8"


show = fv.show_images  # a grid of images with titles


def channel_values(images, *channels):
    """Each channel's mean activation on each image, as a (len(channels), N) tensor."""
    acts = fv.activations(model, LAYER, images)
    return torch.stack([fv.channel(c)(acts) for c in channels])


# %% [markdown]
# ## 1. Diversity
#
# `NeuronVisualization.visualize(unit, facets=n)` optimizes `n` extra images of the unit in the
# same batch, with an extra term that rewards them for being *different*. Difference is
# measured on the layer's Gram matrix (channel-by-channel correlations, pooled over
# positions), which describes what kind of texture the layer sees regardless of where: two
# facets with the same Gram matrix are the same facet drawn twice. Written as an objective it
# is `obj.channel(LAYER, unit) + w * obj.diversity(LAYER)`; `NeuronVisualization` scales `w` to
# the layer's activations for you, and `negative=True` adds the negative optimum to the batch.

# %%
UNIT = 15
viz = fv.NeuronVisualization(model, LAYER)
v = viz.visualize(UNIT, facets=FACETS, negative=True, size=SIZE, steps=STEPS)

act = v.activation
show(
    torch.cat([v.positive, v.facets, v.negative]),
    [f"positive\n{act['positive'][0]:.1f}"]
    + [f"facet {i + 1}\n{a:.1f}" for i, a in enumerate(act["facets"])]
    + [f"negative\n{act['negative'][0]:.1f}"],
    suptitle=f"{LAYER}, channel {UNIT}: activation under each image",
)

# %% [markdown]
# Are the facets really more different from each other than what random restarts give? Render
# the same channel from `FACETS` random starting points without the diversity term, and
# compare the mean pairwise Gram similarity (`obj.similarity`, 1 = same texture statistics)
# in both batches.

# %%
restarts = fv.render(model, obj.channel(LAYER, UNIT), size=SIZE, steps=STEPS, batch=FACETS)


def mean_similarity(images):
    sim = obj.similarity(fv.activations(model, LAYER, images))
    n = len(images)
    return ((sim.sum() - sim.diagonal().sum()) / (n * (n - 1))).item()


print(
    f"random restarts: Gram similarity {mean_similarity(restarts.images):.3f}, "
    f"activation {channel_values(restarts.images, UNIT).mean():.1f}"
)
print(
    f"diverse facets:  Gram similarity {mean_similarity(v.facets):.3f}, "
    f"activation {channel_values(v.facets, UNIT).mean():.1f}"
)
show(
    torch.cat([restarts.images, v.facets]),
    [f"restart {i + 1}" for i in range(FACETS)] + [f"facet {i + 1}" for i in range(FACETS)],
    ncols=FACETS,
)

# %% [markdown]
# With the full settings, channel 15 responds to eye-like spots set in feather- or fur-like
# strands. The four restarts are variations of that one picture (Gram similarity about 0.92).
# The facets shift the balance between its ingredients: some are mostly strands, others mostly
# spots and scale patterns, and their similarity drops to about 0.73 while the activation
# barely moves (about 30 in both batches). Raise `diversity_weight=` in `visualize` to push the
# facets further apart, at a growing cost in activation.
#
# ## 2. Negative optima
#
# Objectives are always maximized in captum-fv, so the negative optimum of a unit is simply
# the optimum of `-obj.channel(...)`: the image that pushes the channel as far below zero as
# it goes. `negative=True` does that in the same batch as the positive optimum. The pairs
# below are often more telling than the positive optimum alone.

# %%
PAIR_UNITS = [3, 4]
pairs = viz.visualize(PAIR_UNITS, negative=True, size=SIZE, steps=STEPS)
show(
    torch.cat([torch.cat([r.positive, r.negative]) for r in pairs]),
    [
        t
        for r in pairs
        for t in (f"{r.name} +\n{r.activation['positive'][0]:.1f}", f"{r.name} -\n{r.activation['negative'][0]:.1f}")
    ],
    ncols=4,
)

# %% [markdown]
# With the full settings: channel 3 likes rounded, overlapping, colourful scales, and its
# negative optimum is long curved bands of feather-like stripes. Channel 4 likes thin straight
# stripes carrying rows of bright dots (the channel of the *Regularization* tutorial), and is
# driven lowest by large, smooth, grey round blobs without any straight line.
#
# ## 3. Joint optimization
#
# Objectives add up. `obj.channel(LAYER, A) + obj.channel(LAYER, B)` asks for an image that
# excites both channels at once, and the optimizer has to find a way to fit both features in
# one picture; `A - B` asks for A's feature *without* B's. The numbers under each image are the
# two channels' activations on it.

# %%
A, B = 3, 4
combinations = {
    f"channel {A}": obj.channel(LAYER, A),
    f"channel {B}": obj.channel(LAYER, B),
    f"{A} + {B}": obj.channel(LAYER, A) + obj.channel(LAYER, B),
    f"{A} - {B}": obj.channel(LAYER, A) - obj.channel(LAYER, B),
}
joint = torch.cat([fv.render(model, o, size=SIZE, steps=STEPS).images for o in combinations.values()])
values = channel_values(joint, A, B)
show(joint, [f"{name}\n{A}: {a:.1f}  {B}: {b:.1f}" for name, a, b in zip(combinations, *values)])

# %% [markdown]
# Each channel alone leaves the other near or below zero. The sum finds a compromise that
# excites both about equally (in our full run about 25 each, against about 40 and 36 alone):
# arcs of channel 3's scales drawn with channel 4's dotted stripes. The difference keeps
# channel 3's scales and paints them with the smooth grey blobs of channel 4's negative
# optimum, driving channel 4 strongly negative.

# %% [markdown]
# ## 4. Interpolating between two channels
#
# `obj.channel_interpolate(LAYER, A, B)` gives each of the batch's `n` images its own target:
# image `i` maximizes `(1 - t) * A + t * B` with `t = i / (n - 1)`, from pure A to pure B.
# Optimized independently, neighbouring frames would look unrelated. Two things make the
# sweep read as one image morphing:
#
# * `fv.param.image(SIZE, batch=n, shared=True)` adds a component common to every frame;
# * `obj.alignment(LAYER)` is a cost on how much each frame's activations differ from its
#   neighbours'; we subtract it.

# %%
W_ALIGN = 0.1  # much larger (try 1.0) and every frame freezes into the same compromise
frames = fv.render(
    model,
    obj.channel_interpolate(LAYER, A, B) - W_ALIGN * obj.alignment(LAYER),
    param=fv.param.image(SIZE, batch=FRAMES, shared=True),
    steps=STEPS,
)
values = channel_values(frames.images, A, B)
t = torch.linspace(0, 1, FRAMES)
show(frames.images, [f"t = {ti:.2f}\n{A}: {a:.1f}  {B}: {b:.1f}" for ti, a, b in zip(t, *values)])

# %% [markdown]
# Along the sweep channel A's activation falls and channel B's rises (in our full run from
# about 37 to 2, and from about -1 to 34), while the shared component and the alignment cost
# keep the layout of neighbouring frames alike: the same arcs turn from scales into dotted
# stripes in place.
#
# ## 5. Random directions
#
# A channel is one basis direction of the layer's activation space. The Distill article found
# that random directions are often just as interpretable as basis directions: features are not
# necessarily aligned with channels. `obj.random_direction(LAYER, seed=s)` maximizes the
# projection of the activation onto a seeded random unit vector over the layer's 112
# channels.
#
# Several objectives can share one batch: `batch=i` sends an objective to image `i` only, so
# the sum below optimizes `N_DIRECTIONS` directions in one render.

# %%
directions = [obj.random_direction(LAYER, seed=s, batch=s) for s in range(N_DIRECTIONS)]
random_result = fv.render(model, sum(directions), size=SIZE, steps=STEPS, batch=N_DIRECTIONS)

titles = []
for s, d in enumerate(directions):
    weights = d.direction["d"]  # the unit vector drawn for this seed
    top = weights.abs().topk(3).indices.tolist()
    titles.append(f"seed {s}\n" + " ".join(f"{weights[c]:+.2f}·c{c}" for c in top))
show(random_result.images, titles, suptitle="random directions (largest channel weights below)")

# %% [markdown]
# Each direction mixes all 112 channels with weights of a few tenths at most, yet the pictures
# look as coherent as single-channel ones: a reminder to treat channels as one convenient
# basis, not as *the* units of meaning.
