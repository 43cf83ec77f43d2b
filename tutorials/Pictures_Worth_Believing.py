# %% [markdown]
# # Pictures worth believing: recipes, MaCo, dead units, a dataset prior, accentuation
#
# A visualization is evidence only if it is strong (the unit fires on it at least as much as on
# its best photo), natural enough to read, and, for a class, recognised by *other* models too.
# This notebook walks through the tools captum-fv has for that:
#
# 1. **recipes**: named ways to render (`fv.recipes()`); `"maco"` keeps the magnitude spectrum
#    of natural photos and optimizes only the phase (Fel et al., NeurIPS 2023);
# 2. **class images that transfer** to EfficientNet-Lite1;
# 3. **dead units rescued**: a unit that is zero on the starting image still gets a gradient;
# 4. **a dataset prior** (`"aligned"`): the picture keeps the feature statistics of the unit's
#    top photos;
# 5. **feature accentuation**: what, in *this* photo, the unit wants more of.
#
# Objectives are *maximized* throughout.

# %%
import os

# CAPTUM_FV_FAST=1 runs everything with tiny settings (a smoke test: the pictures are meaningless).
FAST = os.environ.get("CAPTUM_FV_FAST", "0") == "1"
SIZE = 64 if FAST else 128
CLASS_SIZE = 64 if FAST else 224
STEPS = 8 if FAST else 128
CROPS = 4 if FAST else 16

# %%
import torch

import captum_fv as fv
from captum_fv import objectives as obj

fv.tune_cpu_allocator()
model = fv.models.efficientnet_lite0()
labels = fv.models.imagenet_labels()
photos = fv.data.sample_images(size=SIZE, crops=CROPS)  # (image, photo index) pairs
pool = torch.stack([image for image, _ in photos])
for name, what in fv.recipes().items():
    print(f"{name:8s} {what}")

# %% [markdown]
# ## 1. One channel, two recipes
#
# The same channel rendered with the Fourier recipe (the default for units: cheapest per step)
# and with MaCo. For each picture: its activation over the best photo's, and its high-frequency
# energy (`fv.metrics.high_frequency_energy`; natural photos measure 0.02 to 0.07).

# %%
LAYER, UNIT = "_blocks.8", 12
best = fv.activations(model, LAYER, pool).mean(dim=(2, 3))[:, UNIT].max()
viz = fv.NeuronVisualization(model, LAYER)
pictures, titles = [], []
for recipe in ("fourier", "maco"):
    v = viz.visualize(UNIT, size=SIZE, steps=STEPS, recipe=recipe, progress=False)
    ratio = float(v.activation["positive"].flatten()[0] / best)
    hf = float(fv.metrics.high_frequency_energy(v.positive)[0])
    pictures.append(v.positive)
    titles.append(f"{recipe}: x{ratio:.1f}, HF {hf:.3f}")
fv.show_images(torch.cat(pictures), titles)

# %% [markdown]
# MaCo's picture has the spectrum of a photo; `transparency=True` also returns which pixels the
# objective used (the accumulated input-gradient magnitude), drawn over a checkerboard.

# %%
r = fv.render(model, obj.channel(LAYER, UNIT), recipe="maco", size=SIZE, steps=STEPS, transparency=True, progress=False)
fv.show_images(torch.cat([r.images, fv.heatmap.transparent(r.images, r.transparency)]), ["maco", "transparency"])

# %% [markdown]
# ## 2. Class images that another model recognises
#
# Class objectives get MaCo by default (`fv.recipe.DEFAULTS`): on `benchmarks/bench_quality.py`
# its class images are recognised by EfficientNet-Lite1 and -Lite2, and by a person naming them
# blind, where the Fourier recipe's grey textures are not always. Here two classes, each judged
# by Lite0 (which made it) and Lite1 (which did not).

# %%
classes = [949, 471]  # strawberry, cannon
lite1 = fv.models.efficientnet_lite1()
shown, captions = [], []
for recipe in ("fourier", "maco"):
    r = fv.render(
        model, obj.class_logit(classes, batch=range(2)), recipe=recipe, size=CLASS_SIZE, steps=STEPS, progress=False
    )
    with torch.no_grad():  # the models take RGB in [0, 1] and normalize it themselves
        own, other = model(r.images).argmax(1), lite1(r.images).argmax(1)
    shown.append(r.images)
    for c, a, b in zip(classes, own, other):
        print(f"{recipe:8s} {labels[c]:12s} Lite0 says {labels[a]:12s} Lite1 says {labels[b]}")
    captions += [f"{recipe}: {labels[c]}\nLite1: {labels[b]}" for c, b in zip(classes, other)]
fv.show_images(torch.cat(shown), captions, ncols=4, scale=3)

# %% [markdown]
# ## 3. A dead unit, rescued
#
# Channel 0 of `_blocks.8._depthwise_conv` reads an input that went through a ReLU6 which is flat
# on the starting noise: the plain gradient is exactly zero, so an ordinary optimizer never
# moves. The rescue (on by default) redirects the gradient through flat ReLU/ReLU6 for a few
# steps in the rows that need it, then restarts what is still dead; `rescue=False` shows the
# failure it prevents (and that it is reported, not silent).

# %%
dead = obj.channel("_blocks.8._depthwise_conv", 0)
for rescue in (False, True):  # off: the blank is reported (a warning and .dead_slots), not silent
    r = fv.render(model, dead, size=SIZE, steps=STEPS, rescue=rescue, progress=False)
    print(f"rescue={rescue}: value {float(r.values[0]):.3f}, dead slots {r.dead_slots}")

# %% [markdown]
# ## 4. A dataset prior
#
# `recipe="aligned"` adds a cost that pulls the picture's sorted per-channel activations, at the
# unit's layer and two earlier blocks, towards those of the unit's top photos (mined from
# `dataset=`, or given as `examples=`). The picture stays as strong, with the statistics of the
# photos that drive the unit.

# %%
v = viz.visualize(UNIT, size=SIZE, steps=STEPS, recipe="aligned", dataset=photos, k=4, progress=False)
ratio = float(v.activation["positive"].flatten()[0] / best)
fv.show_images(torch.cat([pictures[0], v.positive]), ["fourier", f"aligned: x{ratio:.1f}"])

# %% [markdown]
# ## 5. Feature accentuation
#
# `fv.accentuate` starts from real photos and raises the unit while staying close to them in an
# early layer: the change shows *what* in this photo the unit wants more of. Integrated
# Gradients on the same photos shows *where* it fired; a neuron report puts both beside each
# top example.

# %%
top = fv.DatasetExamples(model, LAYER).collect(photos, k=3, units=[UNIT], progress=False).images(UNIT)
acc = fv.accentuate(model, LAYER, top, UNIT, steps=12, lr=0.1)
ig = fv.attribute(model, LAYER, top, UNIT, n_steps=16, tolerance=None)
maps = fv.heatmap.signed_overlay(top, ig.attributions).image
rows = torch.cat([top, acc.images, maps])
names = [f"photo ({float(b):.2f})" for b in acc.before] + [f"accentuated ({float(a):.2f})" for a in acc.after]
fv.show_images(rows, names + ["IG"] * len(top), ncols=len(top))
