# %% [markdown]
# # When to trust a visualization
#
# An optimized image shows what drives a unit *most*, which is not always what the unit does on
# real photos: a network can be rewired so that its visualizations show a pattern no photo holds
# while its behaviour on photos is unchanged (Geirhos et al., ICML 2024). `fv.trust.score`
# measures, for one unit, how far its pictures agree with its natural examples:
#
# * **ratio**: the picture's activation over the best photo's;
# * **path similarity**: at layers on the way to the unit, does the network process the picture
#   like the unit's top photos (Spearman correlation of channel means) rather than like any photo?
# * **MIS**: a simulated 2AFC (Zimmermann et al., NeurIPS 2024): shown the pictures, can a
#   machine tell the unit's top photo from its bottom one? (Similarity: the model's own
#   features, a proxy for the paper's DreamSim.)
#
# and gives a verdict: `consistent`, `check` or `off-natural`, with a reason. Every neuron report
# (`fv.NeuronReport`, `captum-fv report`) does this for each unit; the last section shows it.

# %%
import os

# CAPTUM_FV_FAST=1 runs everything with tiny settings (a smoke test: the pictures are meaningless).
FAST = os.environ.get("CAPTUM_FV_FAST", "0") == "1"
SIZE = 64 if FAST else 96
STEPS = 8 if FAST else 128
CROPS = 8 if FAST else 16  # the trust block needs 58 images or more (29 top, 29 bottom)

# %%
import torch

import captum_fv as fv
from captum_fv import trust

fv.tune_cpu_allocator()
torch.manual_seed(0)
model = fv.models.efficientnet_lite0()
LAYER, UNIT = "_blocks.8", 12
photos = fv.data.sample_images(size=SIZE, crops=CROPS)  # labels = which photo a crop came from
examples = fv.DatasetExamples(model, LAYER).collect(photos, k=trust.MIN_EXAMPLES, units=[UNIT], progress=False)

# %% [markdown]
# ## An honest unit
#
# The library's own visualization of channel 12, judged against its photos.

# %%
v = fv.NeuronVisualization(model, LAYER).visualize(UNIT, size=SIZE, steps=STEPS, facets=1, progress=False)
honest = trust.score(model, LAYER, torch.cat([v.positive, v.facets]), UNIT, examples)
print(honest.verdict, "-", honest.reason)
fv.show_images(torch.cat([v.positive, examples.images(UNIT)[:3]]), ["picture", "top 1", "top 2", "top 3"])

# %% [markdown]
# ## A manipulated unit
#
# `trust.plant` copies the model and gives the same channel a hidden branch that fires on a
# red-green grating; on every photo it is exactly zero, so the unit's dataset examples do not
# change. Its visualization, made the usual way, shows the grating, and the trust block says so.

# %%
planted = trust.plant(model, LAYER, UNIT, torch.stack([photos[i][0] for i in range(len(photos))]))
pv = fv.NeuronVisualization(planted, LAYER).visualize(UNIT, size=SIZE, steps=STEPS, facets=1, progress=False)
fake = trust.score(planted, LAYER, torch.cat([pv.positive, pv.facets]), UNIT, examples)
print(fake.verdict, "-", fake.reason)
noise = trust.score(model, LAYER, torch.rand(2, 3, SIZE, SIZE), UNIT, examples)
print("noise:", noise.verdict)
fv.show_images(torch.cat([v.positive, pv.positive]), ["honest", "planted"])

# %% [markdown]
# ## The path-similarity curve
#
# Each record's `to_dict()` is what a report stores under `"trust"`: here the curves of both.

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(5, 3))
for rec, name in [(honest, "honest"), (fake, "planted")]:
    d = rec.to_dict()["path_similarity"]
    ax.plot(d["top"], marker="o", label=f"{name}: to top photos")
    ax.plot(d["random"], ls="--", label=f"{name}: to random photos")
ax.set_xticks(range(len(honest.path.layers)), honest.path.layers, rotation=30)
ax.set_ylabel("Spearman")
ax.legend(fontsize=7)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## In a report
#
# `fv.NeuronReport` (and `captum-fv report`) judges every unit's positive optimum and facets the
# same way, mining the 29 top and bottom examples once for all units: the verdict and numbers are
# under `"trust"` in each unit of `report.json` (and its `unit.json`), the unit page shows them
# with the path-similarity curve, and the index lists them per unit (`--no-trust` skips it).

# %%
import json

report = fv.NeuronReport(
    model, LAYER, photos, size=SIZE, steps=STEPS, facets=1, k=3, attribution="gradient", progress=False
)
report.run([UNIT, 30], "trust_report")
index = json.load(open("trust_report/report.json"))["trust"]
print(index["verdicts"])
for row in index["units"]:
    numbers = f"ratio {row['ratio']:.2f}, path {row['path']:+.3f}, MIS {row['mis_fv']:.2f}"
    print(f"{row['title']:12s} {row['verdict']:12s} {numbers}")
