"""Layer patterns and unit lists: which layers and units an audit covers."""

from __future__ import annotations

import pytest
from torch import nn

from captum_fv.selection import ALL, LayerSelection, parse_unit_list, select_layers


def net() -> nn.Module:
    blocks = nn.Sequential(
        *[nn.Sequential(nn.Conv2d(3 if i == 0 else 4, 4, 3, padding=1), nn.ReLU()) for i in range(12)]
    )
    return nn.Sequential(nn.Conv2d(3, 3, 1), blocks, nn.Conv2d(4, 6, 1))


def names(sel):
    return [s.layer for s in sel]


def test_a_star_stays_within_one_dotted_part():
    m = net()
    assert names(select_layers(m, ["1.*"])) == [f"1.{i}" for i in range(12)]  # the blocks, not their parts
    assert names(select_layers(m, ["1.*.0"])) == [f"1.{i}.0" for i in range(12)]
    assert names(select_layers(m, ["1.1?"])) == ["1.10", "1.11"]
    assert names(select_layers(m, ["1.1*"])) == ["1.1", "1.10", "1.11"]
    assert len(select_layers(m, ["1.**"])) == 12 * 3  # '**' crosses dots


def test_model_order_each_layer_once_and_unit_lists_merge():
    m = net()
    sel = select_layers(m, ["2:0-1", "1.3:2", "1.3:0,2", "0"])
    assert sel == [LayerSelection("0", None), LayerSelection("1.3", [2, 0]), LayerSelection("2", [0, 1])]


def test_all_means_every_channel_of_the_layer():
    m = net()
    sel = select_layers(m, ["2:all", "1.0:1"], input_size=8)
    assert sel == [LayerSelection("1.0", [1]), LayerSelection("2", list(range(6)))]
    assert select_layers(m, ["1.0:1", "1.0:all"], input_size=8) == [LayerSelection("1.0", list(range(4)))]


def test_unit_lists():
    assert parse_unit_list("0-3, 7,9-10,3") == [0, 1, 2, 3, 7, 9, 10]
    assert parse_unit_list(" ALL ") == ALL
    with pytest.raises(ValueError, match="backwards; write 3-5"):
        parse_unit_list("5-3")
    with pytest.raises(ValueError, match="cannot read the unit list 'a-b'"):
        parse_unit_list("a-b")


def test_bad_patterns_say_what_to_do():
    m = net()
    with pytest.raises(ValueError, match=r"matches no module \('\*' stays within one dotted part"):
        select_layers(m, ["3.*"])
    with pytest.raises(ValueError, match="closest"):
        select_layers(m, ["1.30"])
    with pytest.raises(ValueError, match="no layer name"):
        select_layers(m, [":0-3"])
    with pytest.raises(ValueError, match="at least one layer pattern"):
        select_layers(m, [])


def test_a_glob_skips_containers_that_never_run():
    class Listed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList([nn.Conv2d(3, 3, 1) for _ in range(2)])
            self.bias = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            for b in self.blocks:
                x = b(x)
            return self.bias(x)

    assert names(select_layers(Listed(), ["b*"])) == ["bias"]  # not the ModuleList "blocks"
    assert names(select_layers(Listed(), ["blocks.*"])) == ["blocks.0", "blocks.1"]
    with pytest.raises(ValueError, match=r"matches only containers that never run \(blocks\): .*'blocks\.\*'"):
        select_layers(Listed(), ["blo*"])
