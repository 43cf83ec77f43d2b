"""Bad files in an image folder are found when the dataset is made, before any optimization."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from captum_fv import cli, imagefile
from captum_fv.data import image_folder
from captum_fv.imagefile import ImageTooLargeError, UnreadableImageError, check_image_file

TINY = [
    "--model",
    "conftest:make_tiny",
    "--layer",
    "conv2",
    "--size",
    "32",
    "--steps",
    "2",
    "--facets",
    "1",
    "--k",
    "2",
    "--n-steps",
    "4",
    "--tolerance",
    "0",
    "--quiet",
]


def _photo(seed: int, size=(48, 40)) -> Image.Image:
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


def _bad_folder(root: Path) -> Path:
    root.mkdir()
    for i in range(3):
        _photo(i).save(root / f"good_{i}.jpg")
    _photo(9).save(root / "good.png")
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.png").write_text("this is not an image")
    whole = (root / "good_0.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    png = (root / "good.png").read_bytes()
    (root / "cut.png").write_bytes(png[: len(png) - 20])
    return root


def test_check_names_each_kind_of_bad_file(tmp_path):
    root = _bad_folder(tmp_path / "d")
    assert check_image_file(root / "good_0.jpg") is None and check_image_file(root / "good.png") is None
    assert check_image_file(root / "empty.jpg") == "empty file"
    assert check_image_file(root / "notes.png").startswith("not an image")
    assert check_image_file(root / "cut.jpg").startswith("truncated")
    assert check_image_file(root / "cut.png").startswith("truncated")


def test_bad_files_are_skipped_with_one_warning_naming_each(tmp_path):
    root = _bad_folder(tmp_path / "d")
    with pytest.warns(UserWarning) as record:
        ds = image_folder(root, size=16)
    assert len(record) == 1
    message = str(record[0].message)
    for name in ("empty.jpg", "notes.png", "cut.jpg", "cut.png"):
        assert name in message
    assert sorted(s.path for s in ds.skipped) == ["cut.jpg", "cut.png", "empty.jpg", "notes.png"]
    assert ds.names == ["good.png", "good_0.jpg", "good_1.jpg", "good_2.jpg"]
    assert all(ds[i][0].shape == (3, 16, 16) for i in range(len(ds)))


def test_bad_files_raise_when_asked(tmp_path):
    root = _bad_folder(tmp_path / "d")
    with pytest.raises(UnreadableImageError, match="4 unreadable.*empty.jpg"):
        image_folder(root, size=16, on_error="raise")
    with pytest.raises(ValueError, match="on_error"):
        image_folder(root, size=16, on_error="ignore")


def test_only_bad_files_is_an_error_that_says_so(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(FileNotFoundError, match="1 unreadable file"):
            image_folder(root, size=16)


def test_huge_jpeg_decodes_downscaled(tmp_path, monkeypatch):
    _photo(0, size=(1600, 1200)).save(tmp_path / "big.jpg", quality=90)
    full = imagefile.load_image(tmp_path / "big.jpg")
    assert full.size == (1600, 1200)
    monkeypatch.setattr(imagefile, "DRAFT_PIXELS", 100_000)
    small = imagefile.load_image(tmp_path / "big.jpg", min_side=200)
    assert small.size[1] >= 200 and small.size[0] * small.size[1] <= 1600 * 1200 // 16
    ds = image_folder(tmp_path, size=64)  # needs a short side of 64 only
    x, _ = ds[0]
    assert x.shape == (3, 64, 64)


def test_non_jpeg_above_the_pixel_limit_stops_with_a_clear_message(tmp_path, monkeypatch):
    _photo(0, size=(300, 200)).save(tmp_path / "big.png")
    _photo(1, size=(30, 20)).save(tmp_path / "ok.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 300 x 200 = 3x the limit
    with pytest.raises(ImageTooLargeError, match="big.png.*300 x 200.*MAX_IMAGE_PIXELS"):
        image_folder(tmp_path, size=16)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40_000)  # between 1x and 2x: PIL only warns
    with pytest.raises(ImageTooLargeError, match="big.png"):
        image_folder(tmp_path, size=16)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)
    _photo(0, size=(300, 200)).save(tmp_path / "big.png")
    (tmp_path / "big.jpg").write_bytes((tmp_path / "big.png").read_bytes())  # a JPEG name only
    (tmp_path / "big.png").unlink()
    with pytest.raises(ImageTooLargeError, match="big.jpg"):
        image_folder(tmp_path, size=16)


def test_cli_skips_bad_files_before_optimizing_and_counts_them(tmp_path, capsys):
    root = _bad_folder(tmp_path / "d")
    out = tmp_path / "o"
    assert cli.main(["report"] + TINY + ["--units", "0", "--data", str(root), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "skipped 4 unreadable" in line]
    assert len(warning) == 1 and "cut.png" in warning[0]
    report = json.loads((out / "report.json").read_text())
    skipped = report["dataset"]["skipped"]
    assert [s["path"] for s in skipped] == ["cut.jpg", "cut.png", "empty.jpg", "notes.png"]
    assert skipped[2]["reason"] == "empty file"


def test_cli_bad_input_files_exit_2(tmp_path, capsys, monkeypatch):
    root = tmp_path / "d"
    root.mkdir()
    _photo(0, size=(300, 200)).save(root / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)
    code = cli.main(["report"] + TINY + ["--units", "0", "--data", str(root), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "big.png" in err
    assert not (tmp_path / "o").exists()  # stopped before any work


def test_cli_damaged_file_found_by_mining_exits_2_before_optimizing(tmp_path, capsys, monkeypatch):
    root = tmp_path / "d"
    root.mkdir()
    _photo(0).save(root / "a.png")
    _photo(1).save(root / "b.png")
    raw = bytearray((root / "b.png").read_bytes())
    raw[60:200] = bytes(140)
    (root / "b.png").write_bytes(bytes(raw))
    from captum_fv.visualization import NeuronVisualization

    calls = []
    real = NeuronVisualization.visualize
    monkeypatch.setattr(NeuronVisualization, "visualize", lambda *a, **k: calls.append(1) or real(*a, **k))
    code = cli.main(["report"] + TINY + ["--units", "0", "--data", str(root), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "b.png" in err
    assert calls == []  # mining runs first: nothing was optimized
