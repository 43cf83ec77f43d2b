# %% [markdown]
# # Auditing your own model
#
# The other tutorials use the EfficientNet-Lite0 that ships with captum-fv. This one shows how
# to point captum-fv at **your** model and **your** images:
#
# * any `torchvision.models` architecture with weights from a local checkpoint file
#   (`fv.models.torchvision_model(name, weights=path)`; nothing is ever downloaded);
# * a folder of your images (`fv.data.image_folder`);
# * the command line (`captum-fv layers`, `captum-fv report`);
# * the same from Python (`NeuronReport(...).run(...)`, `report.figure(unit)`).
#
# So that the notebook runs anywhere, it *creates* a checkpoint by saving a randomly
# initialised ResNet-18, and fills a folder with the sample photos bundled with captum-fv.
# Replace both paths with your own: a `state_dict` saved with
# `torch.save(model.state_dict(), path)` (a dict holding it under `"state_dict"` or `"model"`
# works too) and a folder of images, flat or with one subfolder per class.

# %%
import os

# CAPTUM_FV_FAST=1 runs everything with tiny settings (a smoke test: the pictures are meaningless).
# Leave it unset for the settings that give the pictures described in the text.
FAST = os.environ.get("CAPTUM_FV_FAST", "0") == "1"
SIZE = 64 if FAST else 128
STEPS = 8 if FAST else 256
FACETS = 1 if FAST else 2
K = 3 if FAST else 6
CROPS = 1 if FAST else 8
UNITS = "0-1" if FAST else "0-2"  # channels, in the CLI's syntax

# %%
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


show = fv.show_images  # a grid of images with titles


# %% [markdown]
# ## A checkpoint and a folder of images
#
# Stand-ins for your own files, in a temporary folder.

# %%
WORK = Path(tempfile.mkdtemp(prefix="captum_fv_audit_"))

# Your checkpoint: here, an untrained ResNet-18 (seeded, so the notebook reproduces).
WEIGHTS = WORK / "my_resnet18.pth"
torch.manual_seed(0)
torch.save(torchvision.models.resnet18(weights=None).state_dict(), WEIGHTS)

# Your images: here, the photos bundled with captum-fv, written out as JPEG files.
PHOTOS = WORK / "my_photos"
PHOTOS.mkdir()
bundled = fv.data.sample_images(size=256)
for (image, _label), name in zip(bundled, bundled.names):
    torchvision.utils.save_image(image, PHOTOS / f"{name}.jpg")
print(sorted(p.name for p in PHOTOS.iterdir()))

# %% [markdown]
# ## Load them
#
# `torchvision_model` builds the architecture by name, loads the state dict (refusing, with an
# explanation, a checkpoint of another architecture) and wraps the model so that it takes RGB
# in [0, 1], normalizing with the ImageNet statistics inside. If your model was trained with
# other statistics, or is not a torchvision model, wrap it yourself with
# `fv.models.with_preprocessing(model, mean, std)`. Layer names stay torchvision's.
#
# `image_folder` reads the images lazily; `crops=n` turns each image into `n` random crops,
# which gives dataset-example mining more to choose from.

# %%
model = fv.models.torchvision_model("resnet18", weights=WEIGHTS)
dataset = fv.data.image_folder(PHOTOS, size=SIZE, crops=CROPS)
print(dataset)
show(
    [dataset[i][0] for i in range(0, len(dataset), max(1, len(dataset) // 6))][:6],
    [name.split(" (")[0] for name in dataset.names[:: max(1, len(dataset) // 6)][:6]],
)


# %% [markdown]
# ## The command line
#
# `captum-fv layers` lists every layer with its output shape, which is where the layer names
# for `--layer` come from. From a terminal you would type
# `captum-fv layers --model torchvision:resnet18 --weights my_resnet18.pth`; in a notebook
# `!captum-fv ...` works too. Here we call it with the notebook's own Python, which is
# equivalent and independent of your `PATH`.
#
# ResNet applies one `relu` module several times per block; captum-fv marks such layers and
# asks for one call, `layer1.0.relu#1` being the second.


# %%
def captum_fv_cli(*args):
    """Run `captum-fv ARGS...` with this notebook's Python and return what it printed."""
    run = subprocess.run([sys.executable, "-m", "captum_fv", *map(str, args)], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(run.stderr)
    return run.stdout


listing = captum_fv_cli("layers", "--model", "torchvision:resnet18", "--weights", WEIGHTS, "--size", SIZE)
lines = listing.splitlines()
print("\n".join(lines[:8] + ["..."] + [line for line in lines if line.startswith("layer3.")]))

# %% [markdown]
# `captum-fv report` builds a neuron report: for each unit, its optimized image, diversity
# facets, negative optimum, the images of `--data` that excite it most and least, and
# Integrated Gradients on the top ones. Everything lands in `--out`: `index.html` (the model
# index), `report.json`, and `layers/<layer>/` with the layer's sortable grid and one folder per
# unit. `--layer` repeats and takes patterns (`--layer 'layer3.*'` is every block of layer3,
# `--layer layer3.1:0-15` names its units); `--resume` keeps the units already finished when you
# extend a report or rerun an interrupted one.

# %%
LAYER = "layer3.1"
cli_out = WORK / "cli_report"
print(
    captum_fv_cli(
        "report",
        "--model",
        "torchvision:resnet18",
        "--weights",
        WEIGHTS,
        "--layer",
        LAYER,
        "--units",
        UNITS,
        "--data",
        PHOTOS,
        "--size",
        SIZE,
        "--steps",
        STEPS,
        "--facets",
        FACETS,
        "--k",
        K,
        "--out",
        cli_out,
        "--quiet",
    )
)
print(sorted(p.name for p in cli_out.iterdir()))

# %% [markdown]
# ## The same from Python
#
# `NeuronReport(model, layer, dataset, ...)` takes the same settings as the command line;
# `run(units, out_dir)` builds and writes the units one by one, and `figure(unit)` draws a
# built unit here.

# %%
from captum_fv.cli import parse_units

units = parse_units(UNITS)
report = NeuronReport(
    model,
    LAYER,
    dataset,
    size=SIZE,
    steps=STEPS,
    facets=FACETS,
    k=K,
    model_name="resnet18 (my checkpoint)",
    progress=False,
)
index = report.run(units, WORK / "api_report")
print("open in a browser:", index)

report.figure(units[0])
plt.show()

# %% [markdown]
# ## Reading an audit
#
# This checkpoint is untrained, and the report shows it: channel 0's optimized image is a
# patch of saturated colour blotches and fine speckle with no recognizable shape or texture,
# its facets are near copies of it, and its top and bottom dataset examples differ in colour
# and contrast rather than in content. (Its negative optimum cannot go below zero: `layer3.1`
# ends with a ReLU.) A random unit is a colour and contrast detector with nothing else to
# show. That is itself a useful sanity check.
# If the units of a model you trained look like this, suspect the checkpoint (wrong file, keys
# not loaded, a different preprocessing) before the method.
#
# With a trained checkpoint, look for units whose optimized image, facets and top examples
# agree on a concept, for units that respond to something they should not (watermarks,
# backgrounds, artefacts of your data collection), and compare the activation reached by the
# optimized image with the best dataset example (the ratio in the figure title): a very large
# ratio means the unit responds far more strongly to something your images never contain.
