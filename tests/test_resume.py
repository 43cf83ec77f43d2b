"""What --resume keeps and redoes (fingerprints), which folders a report writes into, and faults
while writing."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import layer_dir, make_tiny, units_of
from PIL import Image

from captum_fv import cli, fingerprint
from captum_fv.report import NeuronReport, resume, writer
from captum_fv.report.folder import MARKER, OutputFolderError

TINY = [
    "--model",
    "conftest:make_tiny",
    "--layer",
    "conv2",
    "--size",
    "32",
    "--steps",
    "3",
    "--facets",
    "1",
    "--k",
    "2",
    "--n-steps",
    "4",
    "--tolerance",
    "0",
    "--quiet",
    "--no-trust",  # the trust block's own part of the fingerprint is tested in test_report.py
]
KW = dict(
    size=32, steps=3, facets=1, k=2, progress=False, attribution_kwargs={"n_steps": 4, "tolerance": None}, trust=False
)


def _folder(root: Path, seed: int, n: int = 6) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)).save(root / f"im{i}.png")
    return root


def _weights(path: Path, seed: int) -> str:
    torch.save(make_tiny(seed=seed).state_dict(), path)
    return str(path)


def _summary(capsys) -> str:
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("resume:")]
    assert len(lines) == 1, lines
    return lines[0]


def _pngs(out: Path) -> dict:
    return {p.parent.name: p.read_bytes() for p in sorted(out.glob("units/*/positive.png"))}


# --------------------------------------------------------------------------- fingerprints


def test_other_weights_are_redone_not_kept(tmp_path, capsys):
    data = str(_folder(tmp_path / "data", 0))
    out = tmp_path / "r"
    base = ["report"] + TINY + ["--units", "0-1", "--data", data, "--out", str(out)]
    assert cli.main(base + ["--weights", _weights(tmp_path / "a.pt", 1)]) == 0
    first = _pngs(out)
    assert cli.main(base + ["--weights", _weights(tmp_path / "a.pt", 1), "--resume"]) == 0
    assert _summary(capsys) == "resume: kept all 2 units"
    assert _pngs(out) == first
    assert cli.main(base + ["--weights", _weights(tmp_path / "b.pt", 2), "--resume"]) == 0
    assert _summary(capsys) == "resume: kept 0 of 2 units, redoing 2 (weights changed: 2)"
    second = _pngs(out)
    assert set(second) == set(first) and all(second[n] != first[n] for n in first)
    report = json.loads((out / "report.json").read_text())
    assert report["fingerprint"]["weights"] == fingerprint.weights_digest(make_tiny(seed=2))


def test_another_folder_of_as_many_images_is_redone(tmp_path, capsys):
    out = tmp_path / "r"
    base = ["report"] + TINY + ["--units", "0", "--out", str(out)]
    assert cli.main(base + ["--data", str(_folder(tmp_path / "d1", 0))]) == 0
    tops = json.loads((out / "report.json").read_text())["units"][0]["top"]
    assert cli.main(base + ["--data", str(_folder(tmp_path / "d2", 1)), "--resume"]) == 0
    assert _summary(capsys) == "resume: kept 0 of 1 units, redoing 1 (dataset changed: 1)"
    again = json.loads((out / "report.json").read_text())["units"][0]["top"]
    assert [e["activation"] for e in again] != [e["activation"] for e in tops]


def test_each_part_of_the_fingerprint_is_named(tmp_path, monkeypatch):
    data = _folder(tmp_path / "d", 0)
    from captum_fv.data import image_folder

    def report(model=None, **kw):
        return NeuronReport(model or make_tiny(), "conv2", image_folder(data, size=32), **dict(KW, **kw))

    rep = report()
    rep.run([0, 1], tmp_path / "r")
    rep2 = report()
    rep2.run([0, 1], tmp_path / "r", resume=True)
    assert rep2.resumed.kept == ["channel_0000", "channel_0001"] and rep2.resumed.redo == {}

    rep3 = report(steps=4)
    rep3.run([0], tmp_path / "r", resume=True)
    assert rep3.resumed.redo == {"channel_0000": "settings changed"}

    os.utime(data / "im3.png", ns=(1, 1))  # the same bytes, touched
    rep4 = report(steps=4)
    rep4.run([0], tmp_path / "r", resume=True)
    assert rep4.resumed.redo == {"channel_0000": "dataset changed"}

    monkeypatch.setattr(fingerprint, "RESULTS_VERSION", fingerprint.RESULTS_VERSION + 1)
    rep5 = report(steps=4)
    rep5.run([0], tmp_path / "r", resume=True)
    assert rep5.resumed.redo == {"channel_0000": "results changed"}

    other = make_tiny()
    other.relu2 = torch.nn.LeakyReLU()  # same parameters, another module class
    rep6 = report(model=other, steps=4)
    rep6.run([0], tmp_path / "r", resume=True)
    assert rep6.resumed.redo == {"channel_0000": "architecture changed"}


def test_units_from_before_fingerprints_are_redone(tmp_path):
    rep = NeuronReport(make_tiny(), "conv2", None, **KW)
    rep.run([2], tmp_path)
    unit = units_of(tmp_path) / "channel_0002" / "unit.json"
    record = json.loads(unit.read_text())
    del record["fingerprint"]
    unit.write_text(json.dumps(record))  # file digests are of the PNGs and page: still intact
    plan = resume.plan(layer_dir(tmp_path), ["channel_0002"], rep.fingerprint)
    assert plan.redo == {"channel_0002": "results+architecture+weights+dataset+settings changed"}


def test_digests_see_every_value_and_nothing_else():
    a, b = make_tiny(), make_tiny()
    assert fingerprint.weights_digest(a) == fingerprint.weights_digest(b)
    assert fingerprint.architecture_digest(a) == fingerprint.architecture_digest(b)
    b.bn2.running_mean[3] += 1e-6  # a buffer
    assert fingerprint.weights_digest(a) != fingerprint.weights_digest(b)
    c = make_tiny()
    with torch.no_grad():
        c.fc.bias[0] = c.fc.bias[0].item()  # the same value written back: no change
    assert fingerprint.weights_digest(a) == fingerprint.weights_digest(c)
    assert fingerprint.weights_digest(a.to(torch.bfloat16)) != fingerprint.weights_digest(make_tiny())
    assert fingerprint.architecture_digest(make_tiny(classes=11)) != fingerprint.architecture_digest(a)


def test_in_memory_datasets_by_length_and_sampled_items():
    x = torch.rand(40, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ds = torch.utils.data.TensorDataset(x)
    same = torch.utils.data.TensorDataset(x.clone())
    assert fingerprint.dataset_digest(ds) == fingerprint.dataset_digest(same)
    assert fingerprint.dataset_digest(torch.utils.data.TensorDataset(x[:39])) != fingerprint.dataset_digest(ds)
    changed = x.clone()
    changed[0, 0, 0, 0] += 0.5  # the first item is always sampled
    assert fingerprint.dataset_digest(torch.utils.data.TensorDataset(changed)) != fingerprint.dataset_digest(ds)


# --------------------------------------------------------------------------- output folders


def test_a_users_folder_is_never_overwritten(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("my own page")
    code = cli.main(["report"] + TINY + ["--units", "0", "--out", str(mine)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(mine) in err and "--force" in err
    assert sorted(p.name for p in mine.iterdir()) == ["index.html"]
    code = cli.main(["report"] + TINY + ["--units", "0", "--out", str(mine), "--force"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "index.html" in err and "even with --force" in err
    assert (mine / "index.html").read_text() == "my own page"


def test_force_writes_beside_other_files_only_without_clashes(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(OutputFolderError, match="not empty"):
        NeuronReport(make_tiny(), "conv2", None, **KW).run([0], mine)
    NeuronReport(make_tiny(), "conv2", None, **KW).run([0], mine, force=True)
    assert (mine / "notes.txt").read_text() == "keep me" and (mine / MARKER).is_file()
    NeuronReport(make_tiny(), "conv2", None, **KW).run([0, 1], mine, resume=True)  # ours now
    assert (mine / "notes.txt").read_text() == "keep me"


def test_inside_our_folder_only_our_own_files_are_replaced(tmp_path):
    out = tmp_path / "r"
    rep = NeuronReport(make_tiny(), "conv2", None, **KW)
    rep.run([0], out)
    rep.save(out)  # its own index and units: replaced freely
    (out / "index.html").write_text("edited by hand")
    with pytest.raises(OutputFolderError, match="index.html"):
        rep.save(out)
    assert (out / "index.html").read_text() == "edited by hand"
    (out / "index.html").unlink()
    stranger = units_of(out) / "channel_0001"
    stranger.mkdir()
    (stranger / "mine.txt").write_text("x")
    with pytest.raises(OutputFolderError, match="channel_0001"):
        rep.run([1], out)
    assert (stranger / "mine.txt").read_text() == "x"


def test_a_crashed_run_is_recognized_by_resume(tmp_path, capsys):
    out = tmp_path / "r"
    rep = NeuronReport(make_tiny(), "conv2", None, **KW)
    real = rep.layers["conv2"]._write_unit
    rep.layers["conv2"]._write_unit = lambda o, n: real(o, n) or (_ for _ in ()).throw(KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        rep.run([0, 1], out)
    assert not (out / "index.html").exists() and (out / MARKER).is_file()
    assert cli.main(["report"] + TINY + ["--units", "0-1", "--out", str(out), "--resume"]) == 0


# --------------------------------------------------------------------------- faults while writing


@pytest.mark.parametrize(
    "error", [OSError(errno.ENOSPC, "No space left on device"), PermissionError(errno.EACCES, "Permission denied")]
)
def test_a_write_fault_keeps_every_unit_before_it(tmp_path, capsys, monkeypatch, error):
    out = tmp_path / "r"
    real_save = Image.Image.save
    saved = []

    def failing_save(self, fp, *a, **k):
        saved.append(fp)
        if "channel_0002" in str(fp) or ".tmp-channel_0002" in str(fp):
            raise error
        return real_save(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    code = cli.main(["report"] + TINY + ["--units", "0-3", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and error.strerror in err
    assert sorted(p.name for p in units_of(out).iterdir()) == ["channel_0000", "channel_0001"]
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert cli.main(["report"] + TINY + ["--units", "0-3", "--out", str(out), "--resume"]) == 0
    assert _summary(capsys) == "resume: kept 2 of 4 units, redoing 2 (missing: 2)"


def test_a_fault_writing_the_index_keeps_every_unit(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    from captum_fv.report import folder

    def no_space(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    real = folder.atomic_write_text
    monkeypatch.setattr(writer, "atomic_write_text", no_space)
    assert cli.main(["report"] + TINY + ["--units", "0-1", "--out", str(out)]) == 1
    assert "No space left" in capsys.readouterr().err
    monkeypatch.setattr(writer, "atomic_write_text", real)
    assert cli.main(["report"] + TINY + ["--units", "0-1", "--out", str(out), "--resume"]) == 0
    assert _summary(capsys) == "resume: kept all 2 units"
    assert json.loads((out / "report.json").read_text())["missing"] == []
