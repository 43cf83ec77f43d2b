# %% [markdown]
# # Feature visualization with captum-fv: getting started
#
# Attribution methods such as Integrated Gradients tell you *which pixels of this photo* made a
# unit fire. Feature visualization asks the complementary question: *what input would make
# this unit fire the most?* We answer it by optimization. Start from noise, run the model, read
# the unit, and take gradient steps on the **image** (the weights stay frozen) until the unit
# is as high as it gets. The result is a picture of what the unit responds to.
#
# This tutorial covers the basic objectives on EfficientNet-Lite0, an ImageNet classifier that
# ships with captum-fv:
#
# 1. a **channel** (one feature map, averaged over all positions) and a single **neuron**
#    (one position of that map);
# 2. channels at different depths, several at once with `fv.NeuronVisualization`;
# 3. a whole layer at once: **DeepDream**, from noise and from a photo;
# 4. a **class**: its logit versus its softmax probability.
#
# Every call here runs on the CPU. With the full settings the notebook takes several minutes;
# set `CAPTUM_FV_FAST=1` for a quick smoke run with tiny images.

# %%
import os

# CAPTUM_FV_FAST=1 runs everything with tiny settings (a smoke test: the pictures are meaningless).
# Leave it unset for the settings that give the pictures described in the text.
FAST = os.environ.get("CAPTUM_FV_FAST", "0") == "1"
SIZE = 64 if FAST else 128  # image side in pixels
STEPS = 16 if FAST else 256  # optimization steps per picture

# %%
import matplotlib.pyplot as plt
import torch

import captum_fv as fv
from captum_fv import objectives as obj

fv.tune_cpu_allocator()  # big batches on a Linux CPU without page-fault storms (README)

model = fv.models.efficientnet_lite0()  # eval mode, ImageNet weights, takes RGB in [0, 1]
labels = fv.models.imagenet_labels()


show = fv.show_images  # a grid of images with titles


# %% [markdown]
# ## Where to look: layers
#
# Every layer is addressed by its name in `model.named_modules()`. EfficientNet-Lite0 is a stack
# of 16 inverted-residual blocks, `_blocks.0` to `_blocks.15`; the map gets coarser and the
# channels more numerous as we go deeper. `fv.layers` runs one forward pass and lists every
# layer with its output shape (channels, height, width) for our image size.

# %%
for info in fv.layers(model, input_size=SIZE):
    if info.name.startswith("_blocks.") and info.name.count(".") == 1:
        print(f"{info.name:11s} {str(info.shape):16s}")

# %% [markdown]
# ## A channel
#
# An *objective* is a function of the model's activations that we maximize. `obj.channel(layer,
# c)` is the mean of channel `c` of `layer` over all positions. `fv.render` optimizes an image
# for it and returns the images, snapshots along the way, and the objective at every step.
#
# By default `render` already uses the two ingredients that make the pictures readable (see the
# *Regularization* tutorial for what happens without them): the image is parameterized in a
# decorrelated Fourier basis, and the model sees a randomly jittered, scaled and rotated copy
# of it at every step.

# %%
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

# %% [markdown]
# The curve is jagged because every step sees a differently jittered, scaled and rotated copy
# of the image, and it is measured on those copies; `result.values` is measured on the final
# image itself.
#
# The channel is an average over every position of its feature map, so the optimizer gains by
# drawing the feature *everywhere*: the picture is a texture of repeated copies.
#
# ## A neuron
#
# A single neuron is one position of that map. `obj.neuron(layer, c)` takes the centre by
# default (`x=`, `y=` pick another). Only the part of the image inside that position's
# receptive field can change its value, so the feature now appears once, around the centre,
# and the border stays close to the grey it started from.

# %%
neuron_result = fv.render(model, obj.neuron(LAYER, CHANNEL), size=SIZE, steps=STEPS)
show(
    torch.cat([channel_result.images, neuron_result.images]),
    [f"channel {CHANNEL} (all positions)", f"neuron {CHANNEL} (centre position)"],
)

# %% [markdown]
# ## Many channels at once, at different depths
#
# `fv.NeuronVisualization(model, layer)` is the Captum-style entry point: like Captum's
# `NeuronAttribution` classes it is built from a forward function and a layer, and its
# `visualize` takes Captum's `neuron_selector` conventions (an int is a whole channel). A list
# of selectors is optimized in one batch, and each result carries the activation it reached.
#
# In the full-settings run the pictures follow the usual progression. Channels of the early
# block `_blocks.3` draw oriented stripes and weaves, some with a colour preference; those of
# `_blocks.8` draw repeated shapes such as scales, arcs and dotted strokes; those of
# `_blocks.13` draw larger, more object-like parts: eye-like spots, fur and feathers.

# %%
N_UNITS = 2 if FAST else 4
depths = {"_blocks.3": [0, 1, 2, 3], "_blocks.8": [3, 12, 21, 40], "_blocks.13": [0, 1, 2, 3]}

for layer, channels in depths.items():
    viz = fv.NeuronVisualization(model, layer)
    results = viz.visualize(channels[:N_UNITS], size=SIZE, steps=STEPS)
    show(
        torch.cat([r.positive for r in results]),
        [f"{r.name}\nactivation {r.activation['positive'][0]:.1f}" for r in results],
        suptitle=layer,
    )

# %% [markdown]
# ## DeepDream: a whole layer
#
# `obj.deepdream(layer)` maximizes the mean *squared* activation of a whole layer: every channel
# that is already active gets amplified, whichever it is. Started from noise it paints a mix of
# the layer's favourite patterns. Started from a photo (`fv.param.image(..., init=photo)`) with
# a few steps, it exaggerates what the layer already sees in that photo, which is the original
# DeepDream effect.

# %%
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

# %% [markdown]
# ## A class: logit or probability?
#
# The model output is a layer too. `obj.class_logit(k)` maximizes the pre-softmax score of
# ImageNet class `k`; `obj.class_probability(k)` its softmax probability. They sound alike but
# are not. The probability depends on every class: it can be raised by pushing the *other*
# classes down instead of drawing more of this one, and once this class dominates the softmax
# saturates, so its gradient vanishes and the picture stops improving. The logit has neither
# problem, which is why feature visualization usually optimizes logits.

# %%
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
    runner_up = torch.cat([lg[:CLASS], lg[CLASS + 1 :]]).max()
    print(
        f"{name:21s} logit {lg[CLASS]:6.1f}  probability {p[CLASS]:.3f}  "
        f"margin over the runner-up {lg[CLASS] - runner_up:6.1f}"
    )
    print("    top-3: " + ", ".join(f"{labels[i]} {v:.2f}" for v, i in zip(top.values, top.indices)))
    titles.append(f"{name}\nlogit {lg[CLASS]:.1f}, p {p[CLASS]:.2f}")
show(pictures, titles, suptitle=f"class {CLASS}: {labels[CLASS]}")

# %% [markdown]
# In our full-settings run both pictures end with a probability of 1.00, but the one optimized
# for the probability stopped early: its logit is much lower (about 29 against 48), so is its
# margin over the runner-up class (about 17 against 26), and it shows
# far less of the goldfinch's yellow and black. The logit-optimized picture has patches of
# bright yellow with dark markings scattered over a feathery texture.
#
# ## Where next
#
# * *Regularization*: why the default parameterization and transforms matter, measured.
# * *Diversity and interaction*: several facets of one unit, negative optima, combinations of
#   units and random directions.
# * *Captum workflow*: add a visualization step to an attribution you already run.
# * *Auditing your own model*: any torchvision architecture, your checkpoint, your images.
