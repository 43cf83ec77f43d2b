"""Tests for captum_fv.data: bundled sample photos and user image folders, all offline."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from captum_fv.data import _expand, _render, _to_tensor, image_folder, sample_images
from captum_fv.imagefile import load_image as _load_image
from captum_fv.imagefile import working_mode as _working_mode


def _check_item(image: torch.Tensor, label: int, shape: tuple) -> None:
    assert image.dtype == torch.float32 and tuple(image.shape) == shape
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert isinstance(label, int)


def _photo(seed: int, size=(40, 30), mode: str = "RGB") -> Image.Image:
    """A random-noise PIL image (distinct per seed) in ``mode``."""
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB").convert(mode)


# --------------------------------------------------------------------------- sample_images


def test_sample_images_centre_crops() -> None:
    ds = sample_images()
    assert len(ds) >= 5 and len(ds) == len(ds.classes) == len(ds.names)
    assert {"astronaut", "chelsea", "coffee", "rocket"} <= set(ds.classes)
    for i in range(len(ds)):
        image, label = ds[i]
        _check_item(image, label, (3, 224, 224))
        assert label == i and ds.names[i] == ds.classes[label]
        assert float(image.std()) > 0.05  # a real photo, not a blank


def test_sample_images_original_size() -> None:
    ds = sample_images(size=None)
    image, _ = ds[ds.classes.index("chelsea")]
    assert tuple(image.shape) == (3, 300, 451)  # chelsea.png is 451 x 300


def test_sample_images_random_crops() -> None:
    ds = sample_images(crops=16, seed=1)
    n = len(ds.classes)
    assert len(ds) == len(ds.names) == 16 * n
    assert [ds[i][1] for i in range(0, len(ds), 16)] == list(range(n))  # photo-major order
    assert ds.names[17].startswith(f"{ds.classes[1]} (crop 1: x=")
    assert len(set(ds.names)) == len(ds)
    first = [ds[i][0] for i in range(16)]
    for image in first:
        _check_item(image, 0, (3, 224, 224))
    assert all(not torch.equal(first[0], other) for other in first[1:])  # distinct crops differ

    same = sample_images(crops=16, seed=1)
    other = sample_images(crops=16, seed=2)
    assert same.names == ds.names and torch.equal(same[5][0], first[5])
    assert other.names != ds.names and not torch.equal(other[5][0], first[5])


def test_sample_images_leave_global_rng_untouched() -> None:
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    ds = sample_images(size=64, crops=8, seed=3)
    _ = [ds[i] for i in range(0, len(ds), 7)]
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]
    assert random.getstate() == py_state


@pytest.mark.parametrize("channels", [1, 4])
def test_sample_images_channels(channels: int) -> None:
    ds = sample_images(size=64, channels=channels)
    image, label = ds[0]
    _check_item(image, label, (channels, 64, 64))
    if channels == 4:
        assert torch.all(image[3] == 1.0)  # photos are opaque
    else:  # luma of the RGB rendering
        rgb = sample_images(size=64)[0][0]
        luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
        assert torch.allclose(image[0], luma, atol=1e-5)


def test_sample_images_non_square_size() -> None:
    for ds in (sample_images(size=(96, 128)), sample_images(size=(96, 128), crops=2)):
        image, label = ds[1]
        _check_item(image, label, (3, 96, 128))
    assert "w=" in ds.names[0] and "h=" in ds.names[0]


def test_sample_images_bad_arguments() -> None:
    with pytest.raises(ValueError, match="channels"):
        sample_images(channels=2)
    with pytest.raises(ValueError, match="size"):
        sample_images(size=(0, 5))
    with pytest.raises(ValueError, match="min_scale"):
        sample_images(crops=2, min_scale=0)
    with pytest.raises(ValueError, match="crops"):
        sample_images(crops=-1)


# --------------------------------------------------------------------------- image_folder


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    """cats/ (RGB jpg, grayscale png, nested RGBA png), dogs/ (P png), plus junk to skip."""
    root = tmp_path / "pets"
    (root / "cats" / "more").mkdir(parents=True)
    (root / "dogs").mkdir()
    (root / ".hidden").mkdir()
    (root / "empty").mkdir()
    _photo(0).save(root / "cats" / "a.jpg")
    _photo(1, mode="L").save(root / "cats" / "b.png")
    _photo(2, mode="RGBA").save(root / "cats" / "more" / "c.PNG")
    _photo(3, size=(20, 50), mode="P").save(root / "dogs" / "d.png")
    (root / "dogs" / "notes.txt").write_text("not an image")
    _photo(4).save(root / "dogs" / ".e.png")  # hidden file
    _photo(5).save(root / ".hidden" / "f.png")  # hidden folder
    return root


def test_image_folder_class_layout(class_folder: Path) -> None:
    ds = image_folder(class_folder, size=32)
    assert ds.classes == ["cats", "dogs"]
    assert ds.names == ["cats/a.jpg", "cats/b.png", "cats/more/c.PNG", "dogs/d.png"]
    assert [ds[i][1] for i in range(len(ds))] == [0, 0, 0, 1]
    for i in range(len(ds)):
        _check_item(*ds[i], (3, 32, 32))
    gray = ds[1][0]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_image_folder_flat_layout_and_crops(tmp_path: Path) -> None:
    for i, mode in enumerate(["RGB", "L", "RGBA"]):
        _photo(i, size=(60, 45), mode=mode).save(tmp_path / f"img{i}.png")
    (tmp_path / "readme.txt").write_text("skip me")
    ds = image_folder(tmp_path, size=(24, 16), crops=3, seed=7, channels=4)
    assert ds.classes == [tmp_path.name] and len(ds) == 9
    assert all(ds[i][1] == 0 for i in range(len(ds)))
    assert ds.names[4].startswith("img1.png (crop 1: scale=")
    _check_item(*ds[4], (4, 24, 16))
    again = image_folder(tmp_path, size=(24, 16), crops=3, seed=7, channels=4)
    assert again.names == ds.names and torch.equal(again[8][0], ds[8][0])


def test_image_folder_dataloader(class_folder: Path) -> None:
    ds = image_folder(class_folder, size=(20, 28), crops=2)
    batches = list(DataLoader(ds, batch_size=4))
    assert len(batches) == 2
    for images, labels in batches:
        assert tuple(images.shape) == (4, 3, 20, 28) and images.dtype == torch.float32
        assert labels.dtype == torch.int64
    assert batches[0][1].tolist() == [0, 0, 0, 0] and batches[1][1].tolist() == [0, 0, 1, 1]


def test_sample_images_dataloader() -> None:
    images, labels = next(iter(DataLoader(sample_images(size=48, crops=2), batch_size=4)))
    assert tuple(images.shape) == (4, 3, 48, 48) and labels.tolist() == [0, 0, 1, 1]


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_folder(tmp_path / "nope")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        image_folder(tmp_path / "file.png")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("hi")
    with pytest.raises(FileNotFoundError, match=r"no image files found.*\.jpg"):
        image_folder(empty)
    with pytest.raises(ValueError, match="size=None"):
        image_folder(tmp_path, size=None)  # type: ignore[arg-type]


def test_image_folder_damage_inside_a_file_raises_on_load_naming_it(tmp_path: Path) -> None:
    _photo(0).save(tmp_path / "good.png")
    _photo(1).save(tmp_path / "x.png")
    raw = bytearray((tmp_path / "x.png").read_bytes())
    raw[60:200] = bytes(140)  # pixel data destroyed, header and end chunk intact
    (tmp_path / "x.png").write_bytes(bytes(raw))
    ds = image_folder(tmp_path, size=16)  # the check reads headers and ends only
    assert ds.names == ["good.png", "x.png"]
    _check_item(*ds[0], (3, 16, 16))
    with pytest.raises(OSError, match="x.png"):
        ds[1]


def test_image_folder_extensions_and_loose_files(class_folder: Path) -> None:
    assert image_folder(class_folder, size=8, extensions=["JPG"]).names == ["cats/a.jpg"]
    _photo(9).save(class_folder / "loose.png")
    with pytest.warns(UserWarning, match="loose.png|1 image"):
        ds = image_folder(class_folder, size=8)
    assert "loose.png" not in ds.names


# --------------------------------------------------------------------------- pixel helpers


_MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I;16", "I", "F"]


@pytest.mark.parametrize("mode", _MODES)
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_any_pil_mode_converts(tmp_path: Path, mode: str, channels: int) -> None:
    if mode in ("I;16", "I", "F"):
        arr = np.linspace(0, 65535 if mode != "F" else 1, 12 * 10).reshape(10, 12)
        img = Image.fromarray(arr.astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]))
        assert img.mode == mode
    else:
        img = _photo(0, size=(12, 10), mode=mode)
    path = tmp_path / ("x.tif" if mode in ("I;16", "I", "F", "CMYK", "YCbCr") else "x.png")
    try:
        img.save(path)
    except OSError:  # this Pillow cannot write the mode to the format: test in memory only
        path = None
    for source in [img] if path is None else [img, Image.open(path)]:
        x = _to_tensor(_working_mode(source), channels)
        _check_item(x, 0, (channels, 10, 12))
    if mode in ("I;16", "I", "F"):  # full range maps to [0, 1]
        assert float(x.min()) == 0.0 and abs(float(x.max()) - 1.0) < 1e-4
    if path is not None:
        assert _load_image(path).mode in ("L", "LA", "RGB", "RGBA", "F")


def test_alpha_kept_for_four_channels_only(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0], rgba[:, 4:, 3] = 200, 255  # left half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    four = image_folder(tmp_path, size=8, channels=4)[0][0]
    assert torch.all(four[3, :, :4] == 0) and torch.all(four[3, :, 4:] == 1)
    three = image_folder(tmp_path, size=8)[0][0]
    assert tuple(three.shape) == (3, 8, 8)


def test_large_jpeg_decodes_reduced_and_looks_the_same(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    blobs = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((1600, 1200), Image.BICUBIC)
    arr = np.clip(np.asarray(blobs, dtype=np.int16) + rng.integers(-10, 11, (1200, 1600, 3)), 0, 255)
    Image.fromarray(arr.astype(np.uint8)).save(tmp_path / "big.jpg", quality=90)
    full = _load_image(tmp_path / "big.jpg")
    for crops in (0, 3):
        ds = image_folder(tmp_path, size=64, crops=crops)
        bitmap = _load_image(tmp_path / "big.jpg", ds._min_side)
        assert 2 * ds._min_side <= min(bitmap.size) < 1200  # reduced, with twice the pixels needed
        for i in range(len(ds)):
            crop = ds.item(i)[1]
            diff = (ds[i][0] - _render(full, ds.size, crop, 3)).abs()
            assert float(diff.max()) <= 3 / 255 and float(diff.mean()) < 0.5 / 255


def test_items_cost_few_bytes_each(tmp_path: Path) -> None:
    # what a folder's dataset keeps grows with its files: paths as strings and crops in one array
    # keep it near 250 bytes an item (Path objects and crop tuples took about 430)
    _photo(0, size=(8, 8)).save(tmp_path / "a.jpg")
    raw = (tmp_path / "a.jpg").read_bytes()
    for i in range(400):
        (tmp_path / f"img{i:04d}.jpg").write_bytes(raw)
    for crops in (0, 4):
        tracemalloc.start()
        try:
            ds = image_folder(tmp_path, size=8, crops=crops)
            kept = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert kept / len(ds) < 330
        assert [ds.item(i) for i in range(len(ds))] == _expand(ds.files, [0] * 401, crops, 0, 0.25)[0]
