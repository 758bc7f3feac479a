"""Models with fewer than four guiders (``guiders.names``, the paper's Table 4 variants trained
without one): the left-out guider is not built, not stored, not fed, and ``c_multi`` is the
sum of the others."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from model.composed import AnimationModel
from model.config import check_config, preset_config
from model.folder import load_model_folder, read_model_config, save_model_folder
from model.guiders import Conditions
from preprocess.geometry import GeometryConfig
from preprocess.geometry.canvas import build_guider_arrays
from tests.model.helpers import conditions, perturb_
from tests.preprocess.geometry.helpers import person

NO_ORDER = ["pose", "flow", "reference_pose"]


def no_order_model() -> AnimationModel:
    cfg = preset_config("tiny")
    cfg.guiders.names = list(NO_ORDER)
    model = AnimationModel.from_config(cfg).eval()
    perturb_(model.guiders)  # un-zero the outputs so every guider counts
    return model


def test_a_left_out_guider_is_not_built_or_stored(tmp_path: Path) -> None:
    model = no_order_model()
    assert model.guiders.names == NO_ORDER
    full = AnimationModel.from_config(preset_config("tiny"))
    per_guider = sum(p.numel() for p in full.guiders.guiders["order"].parameters())
    count = sum(p.numel() for p in model.guiders.parameters())
    assert count == sum(p.numel() for p in full.guiders.parameters()) - per_guider
    folder = save_model_folder(model, tmp_path / "m")
    stored = load_file(str(folder / "guiders.safetensors"))
    assert {k.split(".")[0] for k in stored} == set(NO_ORDER)
    assert read_model_config(folder).guiders.names == NO_ORDER
    loaded = load_model_folder(folder)  # strict: exactly these keys
    assert loaded.guiders.names == NO_ORDER


def test_c_multi_is_the_sum_of_the_model_guiders_only() -> None:
    model = no_order_model()
    cond = conditions(1, 2)
    with torch.no_grad():
        got = model.guiders(cond)
        # by hand: each remaining guider's conv stack on its own input, summed
        want = sum(
            model.guiders.guiders[name](
                getattr(cond, name).flatten(0, 1)  # (F or 1, C, H, W)
            ).unflatten(0, (1, -1))
            for name in NO_ORDER
        )
        # an order input is ignored (not fed); without it the result is the same
        without = model.guiders(Conditions(cond.pose, cond.flow, None, cond.reference_pose))
    assert isinstance(want, torch.Tensor)
    torch.testing.assert_close(got, want.expand_as(got))
    torch.testing.assert_close(without, got)
    with pytest.raises(ValueError, match="flow guider has no input"):
        model.guiders(Conditions(cond.pose, None, cond.order, cond.reference_pose))


def test_guider_names_are_checked() -> None:
    cfg = preset_config("tiny")
    cfg.guiders.names = ["reference_pose"]
    with pytest.raises(ValueError, match="per-frame guider"):
        check_config(cfg)
    cfg.guiders.names = ["pose", "depth_order"]
    with pytest.raises(ValueError, match="distinct guiders"):
        check_config(cfg)


def test_only_the_named_inputs_are_built() -> None:
    geo, size = GeometryConfig(), (64, 48)
    people = np.stack([person(20, 30, 0.4), person(30, 34, 0.4)])  # (2, 133, 3)
    driving = np.stack([people] * 3)  # (T=3, 2, 133, 3)
    keys = np.tile(np.array([0, 1]), (3, 1))
    full = build_guider_arrays(driving, people, keys, size, geo)
    part = build_guider_arrays(driving, people, keys, size, geo, inputs=NO_ORDER)
    assert part.order is None and full.order is not None and full.order.any()
    for name in NO_ORDER:
        assert np.array_equal(getattr(part, name), getattr(full, name)), name
    conds = Conditions.from_arrays(part)
    assert conds.order is None and set(conds.tensors()) == set(NO_ORDER)
    assert conds.frames(1, 3).shape == (1, 2, *size)
