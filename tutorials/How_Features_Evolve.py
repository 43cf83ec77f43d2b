# %% [markdown]
# # How features evolve
#
# Optimization, unlike a fixed dataset, lets us watch a feature *form* while a network trains.
# This tutorial trains a small CNN from scratch on scikit-learn's handwritten digits (8x8,
# upscaled; available offline), saves checkpoints at a few points of training, and shows the
# same channels under every checkpoint with `fv.FeatureEvolution`:
#
# * every checkpoint's unit is optimized from the **same seed and starting image**, so the
#   differences come from the weights alone;
# * **similarity**: the cosine of each checkpoint's optimum to the final one, both read as
#   channel-mean activation vectors at the layer *in the final checkpoint* (relative to the
#   layer's mean over the dataset);
# * **overlap**: the share of the top-k dataset examples kept from the previous checkpoint;
# * **settled**: the first checkpoint from which the similarity stays at or above 0.9.

# %%
import os

# CAPTUM_FV_FAST=1 runs everything with tiny settings (a smoke test: the pictures are meaningless).
# Leave it unset for the settings that give the pictures described in the text.
FAST = os.environ.get("CAPTUM_FV_FAST", "0") == "1"
PIXELS = 16 if FAST else 32  # digits upscaled to this size
TRAIN_STEPS = 30 if FAST else 600
SAVE_AT = [0, 5, 15, 30] if FAST else [0, 25, 100, 600]
STEPS = 8 if FAST else 128  # optimization steps per unit and checkpoint
UNITS = range(2) if FAST else range(8)
K = 3 if FAST else 6

# %%
import tempfile
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn

import captum_fv as fv

show = fv.show_images

# %% [markdown]
# ## Data and a small CNN

# %%
d = load_digits()
x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16
x = nn.functional.interpolate(x, size=PIXELS, mode="bilinear", align_corners=False)
y = torch.tensor(d.target)


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


# %% [markdown]
# ## Train, saving checkpoints on the way
#
# `torch.save(model.state_dict(), path)`: plain state_dicts, which `FeatureEvolution` reads
# back with `weights_only=True`, one at a time.

# %%
WORK = Path(tempfile.mkdtemp(prefix="captum_fv_evolve_"))
torch.manual_seed(0)
model = small_cnn()
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
g = torch.Generator().manual_seed(0)
checkpoints = []
for step in range(TRAIN_STEPS + 1):
    if step in SAVE_AT:
        path = WORK / f"step{step:04d}.pt"
        torch.save(model.state_dict(), path)
        checkpoints.append(path)
        with torch.no_grad():
            acc = (model(x).argmax(1) == y).float().mean().item()
        print(f"step {step:4d}: accuracy {acc:.2f}")
    if step < TRAIN_STEPS:
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

# %% [markdown]
# ## The same channels under every checkpoint
#
# The last conv layer (`"6"`). `run` writes pages (a strip per unit, an index sorted by how
# much units changed); `build` alone keeps everything in memory.

# %%
evolution = fv.FeatureEvolution(model, "6", checkpoints, x, size=PIXELS * 2, steps=STEPS, k=K, progress=False)
index = evolution.run(UNITS, WORK / "evolution")
print(index)
for u in sorted(evolution.units.values(), key=lambda u: -u.record["change"]):
    r = u.record
    sims = ", ".join(f"{s:.2f}" for s in r["similarity"])
    laps = ", ".join("–" if o is None else f"{o:.2f}" for o in r["overlap"])
    print(
        f"{r['title']:11s} change {r['change']:.2f}  settled from {r['settled']:9s} similarity [{sims}]  overlap [{laps}]"
    )

# %% [markdown]
# Each row: one of the four most changed channels, its optimum at each checkpoint with its
# similarity to the final optimum. At initialization the optima are noise-like textures the random
# filters happen to like; as training goes on most turn into thick stroke-like bars (the parts
# digits are made of), and once the similarity stays at or above 0.9 the feature has settled. A
# channel whose optima stay faint and grey barely responds to anything; its similarities say
# little.

# %%
labels = evolution.labels
for u in sorted(evolution.units.values(), key=lambda u: -u.record["change"])[:4]:
    r = u.record
    show(u.optima(), [f"{lab}\n{s:.2f}" for lab, s in zip(labels, r["similarity"])], suptitle=r["title"])

# %% [markdown]
# ## The dataset examples move too
#
# The best dataset example of one channel under each checkpoint: a unit that has settled keeps
# its examples (overlap near 1), one still forming swaps them.

# %%
u = list(evolution.units.values())[0]
show(
    u.tops(),
    [f"{lab}\noverlap {'–' if o is None else f'{o:.2f}'}" for lab, o in zip(labels, u.record["overlap"])],
    suptitle=u.record["title"] + ": top example",
)

# %% [markdown]
# The same from the command line, for any model the CLI knows:
#
# ```sh
# captum-fv evolve --model torchvision:resnet18 --checkpoint epoch1.pt --checkpoint epoch90.pt \
#     --layer layer3.1.conv2 --units 0-15 --out evolution
# ```
#
# `--resume` keeps units (and each checkpoint's stage of a unit) already complete under the same
# fingerprint; under `torchrun` the units are shared among the processes.
