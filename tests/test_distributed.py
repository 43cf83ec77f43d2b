"""Several processes (torch.distributed, gloo on CPU): the results equal one process's.

Two workers are started with ``torch.multiprocessing.spawn`` (Python API inside a process group)
and with ``torchrun`` (the CLI, which makes its own group); the single-process references are
computed here, with one thread like the workers.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
import torch
import torch.distributed as dist
from conftest import make_tiny
from conftest import units_of as units_folder
from PIL import Image

from captum_fv import distributed as D
from captum_fv.evolution import FeatureEvolution
from captum_fv.mining import DatasetExamples
from captum_fv.report import NeuronReport

WORLD = 2
N_IMAGES = 13  # not divisible by the number of processes, nor by the batch size
BATCH = 4  # batches 0..3 of 4, 4, 4, 1 images: rank 0 runs batches 0 and 2, rank 1 batches 1 and 3
# Chunks of 8 // (2 + 2) = 2 units. GradientSHAP draws from the global RNG: each unit's
# attribution must not depend on which units its process attributed before.
REPORT_KW = dict(
    size=32,
    steps=4,
    facets=2,
    k=2,
    max_batch=8,
    progress=False,
    attribution="gradient_shap",
    attribution_kwargs={"n_samples": 4},
)
UNITS = [0, 1, 2, 3, 4]  # chunks [0, 1], [2, 3], [4]: rank 0 optimizes two, rank 1 one
CLI = [
    "--model",
    "conftest:make_tiny",
    "--layer",
    "conv2",
    "--size",
    "32",
    "--steps",
    "4",
    "--facets",
    "2",
    "--k",
    "2",
    "--max-batch",
    "8",
    "--quiet",
]


class Images(torch.utils.data.Dataset):
    """13 random images; batches 0, 1 and 2 (images 0..3, 4..7, 8..11) are the same images, so
    they give bit-identical activations: exact ties between ranks, both ways round (rank 1's
    4..7 tie with rank 0's 0..3 below them and with rank 0's 8..11 above them)."""

    def __init__(self) -> None:
        x = torch.rand(N_IMAGES, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        x[4:8] = x[8:12] = x[0:4]
        self.x = x
        self.names = [f"img{i}" for i in range(N_IMAGES)]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], i % 3


def zero_unit(acts: torch.Tensor) -> torch.Tensor:
    """A unit that is 0 on every example: everything ties, lower indices must win."""
    return acts[:, 0].mean((1, 2)) * 0


def mining_cases() -> Dict[str, Dict[str, Any]]:
    """Every rank (and the reference) mines the same things: a Dataset (every channel, small
    sample so the quantiles come from a real sample), a tensor with mixed units, a DataLoader
    (read by every rank, run in shares), and data of one batch (rank 1 gets nothing)."""
    ds = Images()
    miner = DatasetExamples(make_tiny(), "conv2")
    kw = dict(k=3, progress=False)
    return {
        "dataset": snapshot(miner.collect(ds, batch_size=BATCH, sample_size=8, seed=3, **kw)),
        "tensor": snapshot(
            miner.collect(ds.x, batch_size=BATCH, units=[0, 5, (3, 1, 1), zero_unit], sample_size=64, **kw)
        ),
        "loader": snapshot(
            miner.collect(
                torch.utils.data.DataLoader(ds, batch_size=5),
                units=[2, 7],
                quantiles=(0.1, 0.5, 0.9),
                sample_size=6,
                **kw,
            )
        ),
        "one_batch": snapshot(miner.collect(ds.x[:3], batch_size=BATCH, units=[1, 2], **kw)),
    }


def snapshot(ex) -> Dict[str, Any]:
    """Everything an ExampleSet holds, as plain tensors and lists."""
    out: Dict[str, Any] = {
        "n": ex.n_examples,
        "k": ex.k,
        "exact": ex.exact_quantiles,
        "levels": ex.levels,
        "quantile_values": ex.quantile_values,
        "dict": ex.to_dict(),
    }
    for i, u in enumerate(ex.units):
        for label, e in ex.spectrum(u):
            out[f"{i}/{label}"] = (e.indices, e.activations, e.positions)
    return out


def assert_same(got: Dict[str, Any], want: Dict[str, Any]) -> None:
    assert got.keys() == want.keys()
    for key, w in want.items():
        g = got[key]
        if isinstance(w, tuple):
            for a, b in zip(g, w):
                assert (a is None and b is None) or torch.equal(a, b), key
        elif torch.is_tensor(w):
            assert torch.equal(g, w), key
        else:
            assert g == w, key


@contextmanager
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def units_of(out: Path):
    return json.loads((out / "report.json").read_text())["units"]


# --------------------------------------------------------------------------- one process


def test_single_process_helpers_are_no_ops(monkeypatch):
    assert not dist.is_initialized()
    assert (D.is_distributed(), D.rank(), D.world_size()) == (False, 0, 1)
    assert D.shard([3, 1, 2]) == [3, 1, 2]
    D.barrier()
    assert D.broadcast_object({"a": 1}) == {"a": 1}
    assert D.all_gather_object("x") == ["x"]
    t = torch.arange(3)
    assert D.all_gather_tensor(t)[0] is t
    assert D.all_gather_or_raise(5) == [5]
    with pytest.raises(KeyError):
        D.all_gather_or_raise(5, KeyError("mine"))
    with pytest.raises(ZeroDivisionError):
        with D.all_or_none():
            1 / 0
    if not torch.cuda.is_available():
        assert D.device() == torch.device("cpu")
    for env in ({}, {"WORLD_SIZE": "1"}):
        monkeypatch.delenv("WORLD_SIZE", raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert D.init_from_env() is False
        with D.process_group_from_env() as shared:
            assert shared is False
        assert not dist.is_initialized()


@pytest.mark.parametrize(
    "extra, message",
    [(["--device", "cuda"], "CUDA is not available"), (["--max-batch", "0"], "--max-batch must be >= 1")],
)
def test_cli_device_and_max_batch_usage_errors(extra, message, tmp_path, capsys):
    from captum_fv import cli

    if extra[1] == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert cli.main(["report"] + CLI + extra + ["--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_distributed_flag_without_group_is_one_process():
    ds = Images()
    miner = DatasetExamples(make_tiny(), "conv2")
    a = miner.collect(ds, k=3, batch_size=BATCH, progress=False)
    b = miner.collect(ds, k=3, batch_size=BATCH, progress=False, distributed=True)
    assert_same(snapshot(b), snapshot(a))


# --------------------------------------------------------------------------- two processes


def _gloo_threads() -> Any:
    """How many gloo worker threads this process has (None where /proc cannot tell)."""
    try:
        tasks = Path("/proc/self/task")
        return sum("gloo" in (t / "comm").read_text() for t in tasks.iterdir())
    except OSError:
        return None


def _worker(rank: int, port: int, root: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        OMP_NUM_THREADS="1",
    )
    torch.set_num_threads(1)
    assert D.init_from_env() is True
    try:
        assert dist.get_backend() == "gloo" and D.is_distributed()
        assert (D.rank(), D.world_size()) == (rank, WORLD)
        helpers = {
            "shard": D.shard(list(range(7))),
            "tensors": D.all_gather_tensor(torch.full((rank + 1, 2), float(rank))),
            "broadcast": D.broadcast_object(f"from {rank}"),
        }
        try:
            D.all_gather_or_raise(rank, ValueError("boom") if rank == 1 else None)
        except Exception as e:
            helpers["failure"] = f"{type(e).__name__}: {e}"
        mined = mining_cases()
        NeuronReport(make_tiny(), "conv2", Images(), **REPORT_KW).run(UNITS, Path(root) / "report")
        NeuronReport(make_tiny(), "conv2", Images(), **REPORT_KW).run([6], Path(root) / "one_chunk")
        helpers["evolved"] = sorted(evolution(Path(root), "evolution").units)
    finally:
        D.destroy()
    # The group is really gone: its gloo threads would otherwise outlive it and can abort the
    # interpreter at exit (see the import at the top of captum_fv/distributed.py).
    helpers["gloo_threads_left"] = _gloo_threads()
    torch.save({"helpers": helpers, "mined": mined}, Path(root) / f"rank{rank}.pt")


def evolution(root: Path, out: str) -> FeatureEvolution:
    """FeatureEvolution over two checkpoints of the tiny model (a re-initialization, its own weights)."""
    paths = [root / "early.pt", root / "final.pt"]
    if not paths[0].exists():
        torch.save(make_tiny(seed=1).state_dict(), paths[0])
        torch.save(make_tiny(seed=0).state_dict(), paths[1])
    kw = dict(size=24, steps=4, k=2, max_batch=2, progress=False)  # chunks of 2 units: ranks get 2 and 1
    ev = FeatureEvolution(make_tiny(), "conv2", paths, Images(), **kw)
    ev.run(UNITS, root / out)
    return ev


def files_of(out: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_two_processes_equal_one(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the spawned workers inherit it
    with one_thread():
        evolution(tmp_path, "evolution_single")  # also writes the checkpoints the workers read
    torch.multiprocessing.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD)
    with one_thread():
        want = mining_cases()
        NeuronReport(make_tiny(), "conv2", Images(), **REPORT_KW).run(UNITS, tmp_path / "single")
        NeuronReport(make_tiny(), "conv2", Images(), **REPORT_KW).run([6], tmp_path / "single_one")

    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    for rank, res in enumerate(results):
        h = res["helpers"]
        assert h["shard"] == list(range(rank, 7, WORLD))
        assert [t.tolist() for t in h["tensors"]] == [[[0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]]
        assert h["broadcast"] == "from 0"
        assert h["gloo_threads_left"] in (0, None)
        boom = "ValueError: boom"  # rank 1 re-raises its error, rank 0 learns of it
        assert h["failure"] == (boom if rank == 1 else f"RuntimeError: rank 1 of 2 failed: {boom}")
        for case, expected in want.items():  # every rank holds the one-process result
            assert_same(res["mined"][case], expected)

    # the cases do test what they claim: ties across ranks, a real sample, tied zeros
    ds_case, t_case = want["dataset"], want["tensor"]
    assert ds_case["n"] == N_IMAGES and not ds_case["exact"] and ds_case["dict"]["sample_size"] == 8
    assert any(bool((ds_case[f"{u}/top"][0] >= 4).any() and (ds_case[f"{u}/top"][0] < 4).any()) for u in range(24))
    assert t_case["3/top"][0].tolist() == [0, 1, 2] and t_case["3/bottom"][0].tolist() == [0, 1, 2]
    for u in range(24):  # of repeated images, the lower index comes first
        for which in ("top", "bottom"):
            idx = ds_case[f"{u}/{which}"][0].tolist()
            for i in range(4):
                kept = [j for j in (i, i + 4, i + 8) if j in idx]
                assert [idx.index(j) for j in kept] == sorted(idx.index(j) for j in kept)
                assert kept == [i, i + 4, i + 8][: len(kept)]  # a tie never skips the lower index

    got, expected = units_of(tmp_path / "report"), units_of(tmp_path / "single")
    assert [u["name"] for u in got] == [f"channel_{u:04d}" for u in UNITS]
    assert got == expected  # every number, name and file sha256
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["processes"] == WORLD and report["missing"] == []
    assert sorted(p.name for p in units_folder(tmp_path / "report").iterdir()) == [u["name"] for u in got]
    # one chunk for two processes: rank 1 optimizes nothing but still mines its share
    assert units_of(tmp_path / "one_chunk") == units_of(tmp_path / "single_one")

    # FeatureEvolution deals its units across the ranks and writes the pages of one process, byte for byte
    evolved = [res["helpers"]["evolved"] for res in results]  # chunks [0, 1], [2, 3], [4] dealt round-robin
    assert evolved == [["channel_0000", "channel_0001", "channel_0004"], ["channel_0002", "channel_0003"]]
    multi, single = files_of(tmp_path / "evolution"), files_of(tmp_path / "evolution_single")
    assert sum(p.endswith("unit.json") for p in single) == len(UNITS) * 3  # per unit, and per checkpoint
    assert multi.keys() == single.keys()
    assert [p for p in single if multi[p] != single[p]] == []


def _write_images(folder: Path, n: int = 7) -> None:
    folder.mkdir()
    g = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(g.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"im{i}.png")


def test_torchrun_cli_equals_one_process_and_resumes(tmp_path):
    from captum_fv import cli

    data = tmp_path / "photos"
    _write_images(data)  # 7 images
    argv = ["report"] + CLI + ["--data", str(data)]
    with one_thread():
        assert cli.main(argv + ["--units", "0-4", "--out", str(tmp_path / "single")]) == 0
        assert cli.main(argv + ["--units", "0-1", "--out", str(tmp_path / "multi")]) == 0
    stamps = {
        u: (units_folder(tmp_path / "multi") / u / "unit.json").stat().st_mtime_ns
        for u in ("channel_0000", "channel_0001")
    }

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONFAULTHANDLER="1",
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    )
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = (
        [torchrun, "--standalone", f"--nproc_per_node={WORLD}", "-m", "captum_fv"]
        + argv
        + ["--units", "0-4", "--out", str(tmp_path / "multi"), "--resume"]
    )
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = [line for line in proc.stdout.splitlines() if line.startswith("report:")]
    assert len(printed) == 1 and f"on {WORLD} processes" in printed[0]  # rank 0 only

    for u, stamp in stamps.items():  # resumed per unit: the complete ones were kept as they were
        assert (units_folder(tmp_path / "multi") / u / "unit.json").stat().st_mtime_ns == stamp
    assert units_of(tmp_path / "multi") == units_of(tmp_path / "single")
