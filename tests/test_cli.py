"""The captum-fv command: exit codes, one-line errors, output confined to --out, resume."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from conftest import layer_dir, units_of

import captum_fv as fv
from captum_fv import cli

TINY = [
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
    "--quiet",
    "--no-trust",  # the trust block is tested on its own below
]


def test_parse_units():
    assert cli.parse_units("0-3,7,9-10") == [0, 1, 2, 3, 7, 9, 10]
    assert cli.parse_units("5,5,4") == [5, 4]
    for bad in ("a", "3-1", "1-", ""):
        with pytest.raises(cli.UsageError):
            cli.parse_units(bad)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["report", "--units", "x-y"], "--units"),
        (["report", "--model", "nope"], "unknown --model"),
        (["report", "--model", "torchvision:resnet81"], "resnet18"),
        (["report", "--model", "conftest:make_tiny", "--layer", "conv9"], "conv1"),
        (TINY + ["--units", "0-99"], "24 channels"),
        (TINY + ["--attribution", "integrated_gradient"], "integrated_gradients"),
        (TINY + ["--data", "/does/not/exist"], "--data"),
        (TINY + ["--attribution", "gradient", "--n-steps", "8"], "--n-steps apply to integrated"),
        (TINY + ["--tolerance", "-1"], "--tolerance must be >= 0"),
        (TINY + ["--n-steps", "0"], "--n-steps must be >= 1"),
        (TINY + ["--atlas", "25"], "--atlas 25: the grid is 1 to 20"),
        (TINY + ["--recipe", "lucid"], "unknown recipe 'lucid'; the recipes are: fourier, maco, aligned"),
        (TINY + ["--path-cuts", "0.5,0.1"], "--path-cuts '0.5,0.1': give increasing fractions in (0, 1)"),
        (TINY + ["--path-cuts", "1%"], "e.g. 0.01,0.05, or none"),
        (TINY + ["--attribution", "gradient", "--path-cuts", "none"], "--path-cuts apply to integrated gradients"),
        (["--classes", "3", "--layer", "conv2"], "drop --layer and --units"),
        (["--model", "conftest:make_tiny", "--transfer-model", "conftest:make_tiny"], "add --classes"),
        (["--model", "conftest:make_tiny", "--classes", "3,50"], "has 10 outputs (0-9)"),
        (["--model", "conftest:make_tiny", "--classes", "3", "--transfer-model", "nope"], "--transfer-model 'nope'"),
        (["--classes", "3", "--transfer-model", "conftest:make_tiny@/no/w.pt"], "does not exist"),
        (["--classes", "3", "--transfer-model", "conftest:make_tiny", "--no-trust"], "drop --no-trust"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv, message, capsys, tmp_path):
    if argv[0] != "report":
        argv = ["report"] + argv
    code = cli.main(argv + ["--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "o").exists()


def test_a_torchvision_model_without_weights_is_called_random(capsys, tmp_path):
    assert cli.main(["report", "--model", "torchvision:resnet18", "--layer", "layer9", "--out", str(tmp_path)]) == 2
    warning, error = capsys.readouterr().err.strip().splitlines()
    assert "torchvision:resnet18 has random weights (no --weights FILE)" in warning and "layer9" in error


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["report", "--steps", "many"])
    assert e.value.code == 2


def test_runtime_failure_exits_1_and_bad_weights_are_a_usage_error(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "w.pt"
    bad.write_bytes(b"not a checkpoint")
    code = cli.main(["report"] + TINY + ["--weights", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is not a plain state_dict; save it with torch.save(model.state_dict(), path)" in err
    torch.save({"conv1.weight": torch.zeros(1)}, bad)  # a state_dict of another model: the keys named
    assert cli.main(["report"] + TINY + ["--weights", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "do not fit model 'conftest:make_tiny'" in err and "missing keys" in err and "conv1.weight" in err
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    (tmp_path / "broken.py").write_text(
        "from conftest import make_tiny\n\n\ndef make():\n    net = make_tiny()\n"
        "    net.forward = lambda x: (_ for _ in ()).throw(RuntimeError('boom\\nsecond line'))\n    return net\n"
    )
    code = cli.main(["report", "--model", "broken:make"] + TINY[2:] + ["--out", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and err.startswith("captum-fv: error:") and "boom" in err
    monkeypatch.setenv("CAPTUM_FV_TRACEBACK", "1")  # the whole story when asked for
    with pytest.raises(RuntimeError, match="boom\nsecond line"):
        cli.main(["report", "--model", "broken:make"] + TINY[2:] + ["--out", str(tmp_path / "c")])


def test_report_writes_only_inside_out_and_resumes(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    out = tmp_path / "audit"
    argv = ["report"] + TINY + ["--units", "0-1", "--out", str(out)]
    assert cli.main(argv) == 0
    assert str(out / "index.html") in capsys.readouterr().out
    assert set(tmp_path.iterdir()) - before == {out}
    report = json.loads((out / "report.json").read_text())
    assert [u["name"] for u in report["units"]] == ["channel_0000", "channel_0001"]
    assert "trust" not in report and all("trust" not in u for u in report["units"])  # --no-trust
    stamp = (units_of(out) / "channel_0000" / "unit.json").stat().st_mtime_ns
    assert cli.main(argv + ["--resume", "--units", "0-2"]) == 0
    assert (units_of(out) / "channel_0000" / "unit.json").stat().st_mtime_ns == stamp
    report = json.loads((out / "report.json").read_text())
    assert [u["name"] for u in report["units"]] == ["channel_0000", "channel_0001", "channel_0002"]


def test_layers_and_objectives_commands(capsys):
    assert cli.main(["layers", "--model", "conftest:make_tiny", "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert "conv2" in out and "(24, 16, 16)" in out
    assert cli.main(["objectives"]) == 0
    out = capsys.readouterr().out
    assert "channel" in out and "diversity" in out and "integrated_gradients" in out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("recipe ")] == list(fv.recipes())


def test_weights_load_for_factory_models(tmp_path, capsys):
    from conftest import make_tiny

    path = tmp_path / "w.pt"
    torch.save(make_tiny(seed=3).state_dict(), path)
    model = cli.load_model("conftest:make_tiny", str(path))
    assert torch.equal(model.conv1.weight, make_tiny(seed=3).conv1.weight)


def test_a_factory_in_the_current_folder_and_a_one_channel_model(tmp_path, capsys, monkeypatch):
    """`--model mynet:make` finds mynet.py where the command runs (as `python -m` would); a
    1-channel model gets 1-channel photos (the bundled ones, or --data)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    (tmp_path / "mynet.py").write_text(
        "from conftest import make_tiny\n\ndef make():\n    return make_tiny(in_channels=1)\n"
    )
    argv = ["report", "--model", "mynet:make"] + TINY[2:] + ["--units", "0", "--out", "gray"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "gray" / "report.json").read_text())
    assert [u["name"] for u in report["units"]] == ["channel_0000"]


def test_integration_settings_reach_the_report_and_invalidate_resume(tmp_path, capsys):
    out = tmp_path / "audit"
    argv = ["report"] + TINY + ["--units", "0", "--out", str(out), "--n-steps", "3"]
    assert cli.main(argv + ["--tolerance", "0"]) == 0
    unit = json.loads((out / "report.json").read_text())["units"][0]
    assert [e["n_steps"] for e in unit["top"]] == [3, 3]  # one pass, exactly --n-steps
    assert unit["settings"]["attribution_kwargs"] == {
        "max_steps": 128,
        "n_steps": 3,
        "tolerance": None,
        "path_cuts": [0.01, 0.05],
    }
    stamp = (units_of(out) / "channel_0000" / "unit.json").stat().st_mtime_ns
    assert cli.main(argv + ["--tolerance", "0.01", "--resume"]) == 0  # other settings: redone
    unit = json.loads((out / "report.json").read_text())["units"][0]
    assert (units_of(out) / "channel_0000" / "unit.json").stat().st_mtime_ns != stamp
    assert unit["settings"]["attribution_kwargs"] == {
        "max_steps": 128,
        "n_steps": 3,
        "tolerance": 0.01,
        "path_cuts": [0.01, 0.05],
    }
    rel = [e["relative_delta"] for e in unit["top"]]
    assert all(r <= 0.01 or e["n_steps"] == 128 for r, e in zip(rel, unit["top"])), unit["top"]
    assert cli.main(argv + ["--tolerance", "0", "--path-cuts", "none", "--resume"]) == 0  # Captum's uncut path
    unit = json.loads((out / "report.json").read_text())["units"][0]
    assert unit["settings"]["attribution_kwargs"]["path_cuts"] == []


def test_class_units_with_transfer_models(tmp_path, capsys):
    from conftest import make_tiny

    weights = tmp_path / "other.pt"
    torch.save(make_tiny(seed=7).state_dict(), weights)
    other = f"conftest:make_tiny@{weights}"
    out = tmp_path / "classes"
    argv = ["report", "--model", "conftest:make_tiny", "--classes", "3,5", "--transfer-model", other]
    argv += ["--size", "32", "--steps", "16", "--facets", "1", "--k", "2", "--n-steps", "4", "--tolerance", "0"]
    assert cli.main(argv + ["--quiet", "--out", str(out)]) == 0
    assert "trust" in capsys.readouterr().out  # the phase's time is printed with the others
    report = json.loads((out / "report.json").read_text())
    assert report["layer"] == "" and [u["name"] for u in report["units"]] == ["channel_0003", "channel_0005"]
    assert report["settings"]["recipe"] == "maco"  # the class default (recipe.DEFAULTS)
    # these random tiny nets rank the classes alike whatever the input: so we know each answer
    ranked = []
    for net in (make_tiny(), make_tiny(seed=7)):
        with torch.no_grad():
            logits = net(torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
        first, five = logits.argmax(1), logits.topk(5, 1).indices.sort(1).values
        assert (first == first[0]).all() and (five == five[0]).all()
        ranked.append([int(first[0])] + five[0].tolist())
    for u in report["units"]:
        c, cls = u["trust"]["classes"], int(u["name"][-4:])
        assert c["class_index"] == cls and c["models"] == ["model", other]
        assert c["top1"] == [float(r[0] == cls) for r in ranked]
        assert c["top5"] == [float(cls in r[1:]) for r in ranked]
    assert report["trust"]["classes"] and report["settings"]["trust"]["transfer"][0]["name"] == other
    index = (layer_dir(out) / "index.html").read_text()
    assert "top-1" in index and "the model output" in index
    page = (units_of(out) / "channel_0003" / "index.html").read_text()
    assert "class 3 on the pictures" in page and other in page
