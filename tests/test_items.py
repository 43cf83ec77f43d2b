"""Tests for captum_fv.items: where an item's image is, collation (with per-item forward
arguments), batch checks, and the dealing of a pass among ranks."""

from __future__ import annotations

import multiprocessing
import os
import sys

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings
from torch.utils.data import DataLoader, Dataset, IterableDataset

import captum_fv as fv
from captum_fv.items import (
    FORWARD_ARGS_KEY,
    Batch,
    Share,
    batches,
    check_batch,
    collate,
    dealt,
    default_workers,
    forward_args_of,
    image_of,
)

IMG = torch.arange(3 * 2 * 2, dtype=torch.float32).view(3, 2, 2)


@pytest.mark.parametrize("item", [IMG, (IMG, 1), [IMG, 1, "x"], {"image": IMG, "label": 0}, {"pixel_values": IMG}])
def test_image_of_finds_the_image(item):
    assert image_of(item) is IMG


def test_image_of_dict_without_image_names_the_keys():
    with pytest.raises(KeyError, match=r"\['label', 'pixels'\]"):
        image_of({"pixels": IMG, "label": 1})


def test_collate_stacks_images_and_collates_args_element_wise():
    items = [{"image": IMG + i, FORWARD_ARGS_KEY: (torch.tensor(float(i)), torch.full((2,), i))} for i in range(3)]
    batch = collate(items)
    assert torch.equal(image_of(batch), torch.stack([IMG + i for i in range(3)]))
    scale, vec = forward_args_of(batch)
    assert scale.tolist() == [0.0, 1.0, 2.0] and vec.shape == (3, 2) and vec[:, 0].tolist() == [0, 1, 2]


def test_collate_one_value_is_one_argument_and_plain_items_stay_a_tensor():
    batch = collate([{"image": IMG, FORWARD_ARGS_KEY: torch.tensor(2.0)}] * 2)
    (scale,) = forward_args_of(batch)
    assert scale.tolist() == [2.0, 2.0]
    plain = collate([(IMG, 0), (IMG, 1)])
    assert torch.is_tensor(plain) and plain.shape == (2, 3, 2, 2) and forward_args_of(plain) is None


def test_collate_refuses_items_with_and_without_args():
    with pytest.raises(ValueError, match="some dataset items"):
        collate([{"image": IMG, FORWARD_ARGS_KEY: 1.0}, {"image": IMG}])


def test_forward_args_of_a_default_collated_dict_batch():
    loader = DataLoader([{"image": IMG, FORWARD_ARGS_KEY: (torch.tensor(1.0), torch.tensor(3))}] * 4, batch_size=4)
    a, b = forward_args_of(next(iter(loader)))
    assert a.tolist() == [1.0] * 4 and b.tolist() == [3] * 4


def test_check_batch_accepts_float_batches_and_explains_the_rest():
    x = torch.rand(2, 3, 4, 4)
    assert check_batch((x, torch.zeros(2)), 3) is x
    with pytest.raises(ValueError, match=r"x\[None\]"):
        check_batch(x[0], 3)
    with pytest.raises(TypeError, match="uint8"):
        check_batch(x.to(torch.uint8), 3)
    with pytest.raises(ValueError, match="channels-last"):
        check_batch(x.permute(0, 2, 3, 1).contiguous()[:, :, :3], 3)


class Squares(Dataset):
    def __len__(self) -> int:
        return 7

    def __getitem__(self, i: int):
        return torch.full((1, 2, 2), float(i)), i


class Stream(IterableDataset):
    def __iter__(self):
        return (torch.full((1, 2, 2), float(i)) for i in range(7))


def firsts(source) -> list:
    return [(int(image_of(b.data)[0, 0, 0, 0]), b.start, len(image_of(b.data))) for b in source.batches]


@pytest.mark.parametrize(
    "data",
    [torch.arange(7.0).view(7, 1, 1, 1).expand(7, 1, 2, 2), Squares(), Stream(), DataLoader(Squares(), batch_size=3)],
)
def test_ranks_take_batches_round_robin_with_their_dataset_indices(data):
    one = firsts(batches(data, 3))
    assert one == [(0, 0, 3), (3, 3, 3), (6, 6, 1)]
    assert firsts(batches(data, 3, rank=0, world=2)) == [one[0], one[2]]
    assert firsts(batches(data, 3, rank=1, world=2)) == [one[1]]


def test_source_knows_the_dataset_and_counts():
    ds = Squares()
    src = batches(ds, 3, rank=1, world=2)
    assert src.dataset is ds and src.total == 3
    stream = batches(Stream(), 3)
    assert stream.dataset is None and stream.total is None


def test_dealt_counts_skipped_batches():
    loader = [torch.zeros(2, 1, 1, 1), torch.zeros(3, 1, 1, 1), torch.zeros(1, 1, 1, 1)]
    assert [b.start for b in dealt(loader, 1, 2)] == [2]
    assert [b.start for b in dealt(loader, 0, 2)] == [0, 5]
    assert isinstance(next(dealt(loader, 0, 1)), Batch)


def test_shuffled_loader_and_unknown_data_are_refused():
    with pytest.raises(ValueError, match="shuffle=False"):
        batches(DataLoader(Squares(), batch_size=2, shuffle=True), 2)
    with pytest.raises(TypeError, match="cannot mine a int"):
        batches(3, 2)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 40), size=st.integers(1, 9), world=st.integers(1, 4), data=st.data())
def test_share_is_the_rank_slice_of_all_batches(n, size, world, data):
    rank = data.draw(st.integers(0, world - 1))
    every = [list(range(s, min(s + size, n))) for s in range(0, n, size)]
    share = Share(n, size, rank, world)
    assert list(share) == every[rank::world] and len(share) == len(every[rank::world])
    assert list(share.starts()) == [b[0] for b in every[rank::world]]
    assert share.examples() == sum(len(b) for b in every[rank::world])


def test_share_holds_no_index_lists():
    # the batches of a billion examples cost what those of seven do: a range, made lazily
    small, huge = Share(7, 3, 1, 2), Share(10**9, 3, 1, 2)
    assert sys.getsizeof(huge.numbers) == sys.getsizeof(small.numbers)
    assert next(iter(huge)) == [3, 4, 5] and len(huge) == (10**9 // 3 + 1) // 2


def test_workers_read_each_rank_share_in_order():
    for rank in range(2):
        alone = firsts(batches(Squares(), 2, rank=rank, world=2))
        assert firsts(batches(Squares(), 2, num_workers=2, rank=rank, world=2)) == alone


def test_workers_and_batch_size_are_checked():
    with pytest.raises(ValueError, match="repeat its examples"):
        batches(Stream(), 3, num_workers=2)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        batches(Squares(), 0)
    with pytest.raises(ValueError, match="num_workers must be an int >= 0"):
        batches(Squares(), 2, num_workers=-1)


def test_default_workers_only_for_our_image_folders_of_several_batches(tmp_path):
    from PIL import Image

    for i in range(16):
        Image.new("RGB", (12, 10), (i * 10, 0, 0)).save(tmp_path / f"{i:02d}.png")
    photos = fv.data.image_folder(tmp_path, size=8)  # 16 items, decoded per item
    assert default_workers(torch.zeros(16, 3, 8, 8), 4) == default_workers(Squares(), 1) == 0
    assert default_workers(photos, 16) == 0  # one batch: nothing to read ahead
    assert default_workers(photos, 8, world=2) == 0  # one batch for each rank
    # the bundled photos are decoded once and kept: a worker would only add its copying
    assert default_workers(fv.data.sample_images(size=8, crops=4), 8) == 0
    forks = (multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]) == "fork"
    assert default_workers(photos, 8) == (1 if forks and len(os.sched_getaffinity(0)) >= 2 else 0)
