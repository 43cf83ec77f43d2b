"""Wrapped models: DataParallel, DistributedDataParallel and torch.compile run unwrapped and eagerly,
layer names resolve with and without the wrapper's prefix, and the wrapper is left as it was."""

from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist
from conftest import make_tiny
from torch import nn

import captum_fv as fv
from captum_fv import fingerprint
from captum_fv.addressing import resolve_layer
from captum_fv.report import NeuronReport

VIS = dict(size=32, steps=4, facets=1, progress=False)


def _state(model: nn.Module) -> dict:
    return {
        "params": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "grad": [p.requires_grad for p in model.parameters()],
        "hooks": sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
        ),
    }


def _same_state(a: dict, b: dict) -> bool:
    return (
        a["training"] == b["training"]
        and a["grad"] == b["grad"]
        and a["hooks"] == b["hooks"]
        and a["params"].keys() == b["params"].keys()
        and all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])
    )


def _wrappers():
    yield "dataparallel", lambda m: nn.DataParallel(m), "module."
    yield "compile", lambda m: torch.compile(m), "_orig_mod."
    yield "nested", lambda m: nn.DataParallel(torch.compile(m)), "module._orig_mod."


@pytest.mark.parametrize("kind,wrap,prefix", list(_wrappers()), ids=[w[0] for w in _wrappers()])
def test_wrapped_models_give_the_plain_models_results(kind, wrap, prefix):
    plain = make_tiny()
    want = fv.NeuronVisualization(plain, "conv2").visualize(3, **VIS)
    wrapped = wrap(make_tiny())
    wrapped.train()  # a wrapper left in training mode must stay so
    before = _state(wrapped)
    for name in ("conv2", prefix + "conv2"):
        assert resolve_layer(wrapped, name).name == "conv2"
        got = fv.NeuronVisualization(wrapped, name).visualize(3, **VIS)
        assert torch.equal(got.positive, want.positive) and torch.equal(got.facets, want.facets)
    acts = fv.activations(wrapped, prefix + "conv2", want.positive)
    assert torch.allclose(acts, fv.activations(plain, "conv2", want.positive))
    assert _same_state(before, _state(wrapped)) and type(wrapped) is type(wrap(make_tiny()))


def test_compiled_models_are_never_compiled():
    import torch._dynamo.utils as dynamo_utils

    torch._dynamo.reset()
    dynamo_utils.counters.clear()
    compiled = torch.compile(make_tiny())
    fv.NeuronVisualization(compiled, "conv2").visualize([0, 1], **VIS)
    x = torch.rand(2, 3, 32, 32)
    fv.attribute(compiled, "_orig_mod.conv2", x, 1, n_steps=4)
    assert sum(dynamo_utils.counters["frames"].values()) == 0  # hooks saw eager module calls


def test_reports_of_a_wrapped_model_equal_the_plain_ones(tmp_path):
    kw = dict(size=32, steps=3, facets=1, k=2, progress=False, attribution_kwargs={"n_steps": 4, "tolerance": None})
    NeuronReport(make_tiny(), "conv2", None, **kw).run([0, 1], tmp_path / "plain")
    wrapped = nn.DataParallel(make_tiny())
    rep = NeuronReport(wrapped, "module.conv2", None, **kw)
    rep.run([0, 1], tmp_path / "wrapped")
    units = [json.loads((tmp_path / d / "report.json").read_text())["units"] for d in ("plain", "wrapped")]
    assert [u["files"] for u in units[0]] == [u["files"] for u in units[1]]
    assert rep.fingerprint["weights"] == fingerprint.weights_digest(make_tiny())


def test_distributed_data_parallel(tmp_path):
    if dist.is_initialized():
        pytest.skip("a process group already exists")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(make_tiny())
        before = _state(ddp)
        want = fv.NeuronVisualization(make_tiny(), "conv2").visualize(2, **VIS)
        for name in ("conv2", "module.conv2"):
            got = fv.NeuronVisualization(ddp, name).visualize(2, **VIS)
            assert torch.equal(got.positive, want.positive)
        assert _same_state(before, _state(ddp))
    finally:
        dist.destroy_process_group()
