# %% [markdown]
# # Adding feature visualization to a Captum workflow
#
# You already explain predictions with Captum: you run Integrated Gradients on a photo and get
# a heat map over its pixels. The heat map says *where* the evidence is, not *what* the network
# saw there. This tutorial adds that missing step to an ordinary Captum workflow:
#
# 1. **the workflow you have**: a prediction and its `IntegratedGradients` attribution;
# 2. **pick the units that matter**: Captum's `LayerActivation` and
#    `LayerIntegratedGradients` on a middle layer tell which channels are most active on this
#    photo and which carry the prediction;
# 3. **look at those units**: `NeuronVisualization` (what maximizes each channel),
#    `DatasetExamples` (which natural images maximize it) and Integrated Gradients of the
#    channel on those examples (which pixels drive it);
# 4. **put it in a report**: `NeuronReport` does all of step 3 for a list of units and writes
#    an HTML page.
#
# One object ties the steps together: the selector `fv.channel(c)`. It is an ordinary callable
# from a layer's output to one value per example, so Captum's `Neuron*` methods accept it as
# `neuron_selector`, and captum-fv's visualization, mining and attribution accept it as the unit.

# %%
import os

# CAPTUM_FV_FAST=1 runs everything with tiny settings (a smoke test: the pictures are meaningless).
# Leave it unset for the settings that give the pictures described in the text.
FAST = os.environ.get("CAPTUM_FV_FAST", "0") == "1"
SIZE = 64 if FAST else 128  # optimized images and dataset examples
STEPS = 8 if FAST else 256  # optimization steps
N_STEPS = 8 if FAST else 32  # Integrated Gradients steps
N_UNITS = 2 if FAST else 3  # channels to look at
CROPS = 2 if FAST else 24  # random crops per bundled photo for the example dataset
K = 3 if FAST else 6  # dataset examples per unit

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from captum.attr import (
    IntegratedGradients,
    LayerActivation,
    LayerAttribution,
    LayerIntegratedGradients,
    NeuronIntegratedGradients,
)
from captum.attr import visualization as captum_viz

import captum_fv as fv
from captum_fv.attribution import attribute
from captum_fv.heatmap import overlay
from captum_fv.mining import DatasetExamples
from captum_fv.report import NeuronReport

fv.tune_cpu_allocator()  # big batches on a Linux CPU without page-fault storms (README)


show = fv.show_images  # a grid of images with titles


# %% [markdown]
# ## 1. The workflow you already have
#
# A model, a photo, its predicted class and an Integrated Gradients attribution for that
# class, visualized with Captum's own `visualize_image_attr_multiple`. captum-fv's models take
# RGB in [0, 1] and normalize inside, so the photo goes in as it is.

# %%
model = fv.models.efficientnet_lite0()
labels = fv.models.imagenet_labels()

photo = fv.data.sample_images(size=224)[1][0]  # Chelsea the cat, (3, 224, 224) in [0, 1]
x = photo[None]
with torch.no_grad():
    probs = model(x).softmax(1)[0]
pred = int(probs.argmax())
print(f"predicted: {labels[pred]} ({probs[pred]:.2f})")

ig = IntegratedGradients(model)
attr, delta = ig.attribute(x, target=pred, n_steps=N_STEPS, return_convergence_delta=True)
print(f"convergence delta {delta.item():.3f}")

_ = captum_viz.visualize_image_attr_multiple(
    attr[0].permute(1, 2, 0).numpy(),
    photo.permute(1, 2, 0).numpy(),
    methods=["original_image", "blended_heat_map"],
    signs=["all", "absolute_value"],
    titles=["photo", f"IG for '{labels[pred]}'"],
    fig_size=(7, 3.5),
)

# %% [markdown]
# ## 2. Pick the units that matter
#
# Choose a middle layer and ask Captum two questions about it on this photo:
#
# * `LayerActivation`: how strongly is each channel active (mean over positions)?
# * `LayerIntegratedGradients`: how much of the predicted logit flows through each channel
#   (the attributions summed over the channel's positions)?
#
# A channel can contribute to the logit even while it is mostly *off* on the photo (by being
# less negative than on the black baseline), which makes for a confusing first example. We
# keep the channels that are on in this photo (positive mean activation) and, among them,
# take those that contribute most to the prediction.
#
# The layer is the module object Captum wants; captum-fv accepts the same object (or its name,
# `"_blocks.8"`) everywhere.

# %%
LAYER = "_blocks.8"
layer = model.get_submodule(LAYER)

layer_acts = LayerActivation(model, layer).attribute(x)  # (1, 112, 14, 14)
activation = layer_acts[0].mean((1, 2))  # (112,)
contribution = (
    LayerIntegratedGradients(model, layer).attribute(x, target=pred, n_steps=N_STEPS)[0].sum((1, 2))
)  # (112,)

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

# %% [markdown]
# Where on the photo are these channels on? Two Captum views: the channel's activation map,
# upsampled to the photo with `LayerAttribution.interpolate`, and `NeuronIntegratedGradients`
# with our selector (a plain Captum `neuron_selector`), which attributes the channel's mean
# to the photo's pixels. Pixel-level Integrated Gradients is speckled, as the class heat map
# above; the activation map is coarse (one value per 16x16 pixels) but easier to read.

# %%
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

# %% [markdown]
# ## 3. What are these channels?
#
# **Optimized images.** `NeuronVisualization(model, layer)` has Captum's constructor shape
# (forward function, layer) and takes the same selectors; a list is optimized in one batch.

# %%
visualizations = fv.NeuronVisualization(model, layer).visualize(units, size=SIZE, steps=STEPS)
show(
    torch.cat([v.positive for v in visualizations]),
    [f"{v.name}\nactivation {v.activation['positive'][0]:.1f}" for v in visualizations],
)

# %% [markdown]
# **Dataset examples.** An optimized image can exaggerate; natural images that excite the same
# unit keep us honest. `DatasetExamples.collect` makes one pass over a dataset (here random
# crops of the photos bundled with captum-fv; use your own with `fv.data.image_folder`) and
# keeps the top and bottom examples of every unit.
#
# **Attribution on those examples.** `captum_fv.attribute(model, layer, inputs, neuron_selector)` runs Captum's
# `NeuronIntegratedGradients` with the same selector on the top examples, and `overlay` draws
# the result the way Captum's blended heat map does. Together they show *which part* of each
# example the channel responds to.

# %%
dataset = fv.data.sample_images(size=SIZE, crops=CROPS)
examples = DatasetExamples(model, layer).collect(dataset, k=K, units=units, progress=False)

for sel in units:
    images = examples.images(sel)
    result = attribute(model, layer, images, sel, n_steps=N_STEPS)
    acts = examples.top(sel).activations
    show(
        torch.cat([images, overlay(images, result.attributions)]),
        [f"{a:.1f}" for a in acts] + [f"rel. delta {d:.2f}" for d in result.relative_delta],
        ncols=K,
        suptitle=f"{sel}: top {K} of {len(dataset)} examples, and Integrated Gradients of the channel",
    )

# %% [markdown]
# The bundled dataset is small (eight photos, cut into random crops), so a unit's top examples
# are often crops of one photo; with your own images (`fv.data.image_folder`) they vary more.
# Read the activation map, the optimized image, the examples and the attribution together.
# In our full-settings run the three channels are 38, 96 and 100. Channel 96 is on around the
# cat's eyes; its optimized image is full of eye-like spots set in swirling fur, and its top
# examples are crops of the cat's face and one dahlia, whose concentric petals repeat the same
# rounded shapes. Channel 38 draws a granular, pebble-like texture; its top examples are crops
# of a motorcycle in a garage, Integrated Gradients puts its weight on the speckled concrete
# floor rather than on the motorcycle, and its bottom examples (in the report below) are
# smooth, dark, textureless areas.
#
# The relative delta under each overlay is Integrated Gradients' completeness check for the
# channel: |sum of attributions - (f(example) - f(baseline))| / |f(example) - f(baseline)|.
# A few percent means the integral has converged; raise `n_steps` if it is larger.
#
# ## 4. All of it, as a report
#
# `NeuronReport` runs steps 3's three parts for a list of units (adding diversity facets, the
# negative optimum, optimization snapshots and bottom examples), `report.figure(unit)` draws
# one unit in the notebook, and `save` writes a browsable HTML report with every number in
# `report.json`.

# %%
report = NeuronReport(
    model,
    layer,
    dataset,
    size=SIZE,
    steps=STEPS,
    facets=2,
    k=K,
    attribution_kwargs={"n_steps": N_STEPS},
    progress=False,
).build(units)

report.figure(units[0])
plt.show()

index = report.save(Path(tempfile.mkdtemp(prefix="captum_fv_workflow_")) / "report")
print("open in a browser:", index)
