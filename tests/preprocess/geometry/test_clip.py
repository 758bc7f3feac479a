"""A clip's geometry (preprocess.geometry.clip): hand-computed clips, and clip_geometry checked
frame by frame against the public per-frame functions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from preprocess import geometry as G
from preprocess.geometry import GeometryConfig
from preprocess.geometry.layout import NUM_KEYPOINTS
from tests.preprocess.geometry.helpers import line_person, masks_of, person, random_people

STATS_KEYS = {
    "bg_flow_mean",
    "bg_flow_p95",
    "occlusion_rate_mean",
    "occlusion_rate_max",
    "characters_max",
    "characters_mode",
    "multi_character_frac",
    "pose_score_mean",
}


# --- the clip: hand-computed ---------------------------------------------------------------

# 40 x 48 frames, maps at the same size (map_downscale 1): disc diameter 3 (0.075 * 40), lines
# 1 px. A: row 10, x 0..20 -> dilated rows 9..11, x 0..21 (66 px). B in frame 0: x 15..35 ->
# x 14..36 (69 px): A∩B x 14..21 = 24 px, A∪B x 0..36 = 111 px, rate 24/111 = 8/37. Frame 1:
# B has two confident body points: absent. Frame 2: B x 18..38 -> 17..39: A∩B 5 cols = 15 px,
# union 40 cols = 120 px, rate 1/8.
CLIP_CFG = GeometryConfig(map_downscale=1, dilation=0.075, limb_width=0.01)
CLIP_SIZE = (40, 48)


def _hand_clip() -> tuple[np.ndarray, np.ndarray]:
    a = line_person(0, 10, 20, 10, 0.9)
    a[8] = (30, 30, 0.1)  # unconfident right elbow: not drawn, not scored
    a[40] = (5, 10, 0.5)  # a face dot inside A's region: drawn, not scored
    b0 = line_person(15, 25, 35, 10, 0.6)
    b1 = line_person(15, 25, 35, 10, 0.6)
    b1[7, 2] = 0.2  # two confident body points left: absent
    b2 = line_person(18, 28, 38, 10, 0.6)
    keypoints = np.stack([np.stack([a, b0]), np.stack([a, b1]), np.stack([a, b2])])
    flow = np.zeros((3, *CLIP_SIZE, 2), np.float32)
    flow[0] = (7, 0)  # F_0 is not a background-flow frame: must be ignored
    flow[1] = (2, 0)
    flow[2] = (0, -4)
    flow[1:, 10, 0:21] = (50, 0)  # character motion inside A's region
    return keypoints, flow


def test_clip_geometry_hand_computed() -> None:
    keypoints, flow = _hand_clip()
    geo = G.clip_geometry(keypoints, flow, CLIP_SIZE, CLIP_CFG)
    assert geo.mask.shape == (3, *CLIP_SIZE) and geo.mask.dtype == bool
    assert [int(m.sum()) for m in geo.mask] == [111, 66, 120]
    assert geo.ranks.dtype == np.int8 and geo.ranks.tolist() == [[0, 1], [0, -1], [0, 1]]
    # feet tie (both at y = 10): track 0 is in front and owns the overlap
    assert (geo.order[0] == 255).sum() == 66 and (geo.order[0] == 191).sum() == 45
    assert (geo.order[0, 9:12, 14:22] == 255).all()
    assert np.array_equal(geo.order > 0, geo.mask)
    s = geo.stats
    assert set(s) == STATS_KEYS
    assert s["bg_flow_mean"] == pytest.approx(3.0)
    assert s["bg_flow_p95"] == pytest.approx(2.0 + 0.95 * 2.0)
    assert s["occlusion_rate_mean"] == pytest.approx((8 / 37 + 1 / 8) / 2)
    assert s["occlusion_rate_max"] == pytest.approx(8 / 37)
    assert (s["characters_max"], s["characters_mode"]) == (2, 2)
    assert s["multi_character_frac"] == pytest.approx(2 / 3)
    assert s["pose_score_mean"] == pytest.approx((0.9 * 3 + 0.6 * 2) / 5, abs=1e-6)
    json.dumps(s, allow_nan=False)
    assert all(type(v) in (int, float) or v is None for v in s.values())


def test_clip_ranks_follow_depth() -> None:
    keypoints, flow = _hand_clip()
    keypoints, flow = keypoints[:1], flow[:1]
    depth = np.zeros((1, *CLIP_SIZE), np.float32)
    depth[0, :, 24:] = 1.0  # B's side of the frame is nearer
    geo = G.clip_geometry(keypoints, flow, CLIP_SIZE, CLIP_CFG, depth)
    assert geo.ranks.tolist() == [[1, 0]]
    assert (geo.order[0, 9:12, 14:22] == 255).all() and (geo.order[0] == 191).sum() == 42
    depth = 1.0 - depth  # now A's side is nearer
    geo = G.clip_geometry(keypoints, flow, CLIP_SIZE, CLIP_CFG, depth)
    assert geo.ranks.tolist() == [[0, 1]]


def test_clip_with_no_tracks_and_with_one_character() -> None:
    flow = np.zeros((4, 10, 12, 2), np.float32)
    flow[..., 0] = 1.5
    keypoints = np.zeros((4, 0, NUM_KEYPOINTS, 3), np.float32)
    cfg = GeometryConfig()
    geo = G.clip_geometry(keypoints, flow, (40, 48), cfg)
    assert geo.mask.shape == (4, 10, 12) and not geo.mask.any() and not geo.order.any()
    assert geo.ranks.shape == (4, 0) and geo.ranks.dtype == np.int8
    assert geo.stats == {
        "bg_flow_mean": pytest.approx(1.5),
        "bg_flow_p95": pytest.approx(1.5),
        "occlusion_rate_mean": None,
        "occlusion_rate_max": None,
        "characters_max": 0,
        "characters_mode": 0,
        "multi_character_frac": 0.0,
        "pose_score_mean": None,
    }
    one = person(24, 20, scale=0.3)[None, None].repeat(4, 0)  # (4, 1, 133, 3)
    geo = G.clip_geometry(one, flow, (40, 48), cfg)
    assert geo.stats["characters_mode"] == 1 and geo.stats["occlusion_rate_mean"] is None
    assert geo.stats["pose_score_mean"] == pytest.approx(0.9)


def test_characters_mode_ties_go_to_the_smaller_count() -> None:
    single = person(24, 20, scale=0.3)
    pair = np.stack([single, person(10, 20, scale=0.3)])
    keypoints = np.stack([pair, pair, pair * [1, 1, 0]]).astype(np.float32)  # counts 2, 2, 0
    keypoints = np.concatenate([keypoints, keypoints[2:]])  # counts 2, 2, 0, 0
    flow = np.zeros((4, 10, 12, 2), np.float32)
    stats = G.clip_geometry(keypoints, flow, (40, 48), GeometryConfig()).stats
    assert stats["characters_mode"] == 0 and stats["characters_max"] == 2
    assert stats["bg_flow_mean"] == 0.0


def test_clip_geometry_rejects_flow_at_the_wrong_size() -> None:
    keypoints = np.zeros((2, 1, NUM_KEYPOINTS, 3), np.float32)
    with pytest.raises(ValueError, match="flow"):
        G.clip_geometry(keypoints, np.zeros((2, 9, 12, 2)), (40, 48), GeometryConfig())
    with pytest.raises(ValueError, match="depth"):
        G.clip_geometry(
            keypoints, np.zeros((2, 10, 12, 2)), (40, 48), GeometryConfig(), np.zeros((2, 9, 9))
        )


# --- properties --------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 6), st.integers(1, 4), st.booleans())
def test_clip_geometry_agrees_with_the_per_frame_functions(
    seed: int, n: int, frames: int, with_depth: bool
) -> None:
    rng = np.random.default_rng(seed)
    cfg = GeometryConfig(map_downscale=int(rng.choice([1, 2, 4])))
    frame_size = (96, 128)
    h, w = G.map_size(*frame_size, cfg.map_downscale)
    keypoints = np.stack([random_people(rng, n, *frame_size) for _ in range(frames)])
    if n:  # a present character entirely off the map: nothing to draw
        keypoints[rng.integers(frames), rng.integers(n), :, :2] -= 10_000
    flow = rng.normal(0, 2, (frames, h, w, 2)).astype(np.float32)
    depth = rng.random((frames, h, w)).astype(np.float32) if with_depth else None
    geo = G.clip_geometry(keypoints, flow, frame_size, cfg, depth)
    thr, rates, b = cfg.keypoint_threshold, [], []
    for t in range(frames):
        masks = masks_of(keypoints[t], frame_size, (h, w), cfg)  # (P, h, w)
        present = G.present_characters(keypoints[t], thr, cfg.min_keypoints)
        assert np.array_equal(geo.mask[t], G.union_mask(masks))
        if depth is None:
            near = G.nearness_from_feet(keypoints[t], present, thr)
        else:
            near = G.nearness_from_depth(depth[t], masks, present)
        assert np.array_equal(geo.ranks[t], G.ranks_from_nearness(near, present))
        assert np.array_equal(
            geo.order[t], G.depth_order_map(masks, geo.ranks[t], cfg.order_levels)
        )
        rates.append(G.occlusion_rate(masks, present))
        b.append(G.background_flow_magnitude(flow[t], geo.mask[t]) if t else math.nan)
    rates_ok = [r for r in rates if r is not None]
    assert geo.stats["occlusion_rate_mean"] == (
        pytest.approx(np.mean(rates_ok)) if rates_ok else None
    )
    assert geo.stats["occlusion_rate_max"] == (max(rates_ok) if rates_ok else None)
    b_ok = [v for v in b if not math.isnan(v)]
    assert geo.stats["bg_flow_mean"] == (pytest.approx(np.mean(b_ok)) if b_ok else None)


def test_a_long_crowded_clip_matches_its_frames() -> None:
    # 16 frames x 6 large characters: their crops fill several shelves of the packed atlas
    rng = np.random.default_rng(7)
    cfg = GeometryConfig(map_downscale=1, dilation=0.08)
    frame_size = (96, 128)
    keypoints = np.stack(
        [
            np.stack([person(cx, 50 + rng.uniform(-5, 5), scale=0.9) for cx in range(10, 130, 20)])
            for _ in range(16)
        ]
    )  # (16, 6, 133, 3)
    flow = np.zeros((16, *frame_size, 2), np.float32)
    geo = G.clip_geometry(keypoints, flow, frame_size, cfg)
    for t in range(16):
        masks = masks_of(keypoints[t], frame_size, frame_size, cfg)
        assert np.array_equal(geo.mask[t], G.union_mask(masks))
        assert np.array_equal(geo.order[t], G.depth_order_map(masks, geo.ranks[t], 4))
    rate = geo.stats["occlusion_rate_max"]
    assert geo.stats["characters_max"] == 6 and rate is not None and rate > 0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(1, 4))
def test_clip_geometry_is_invariant_to_track_permutation(seed: int, n: int, frames: int) -> None:
    rng = np.random.default_rng(seed)
    cfg = GeometryConfig()
    frame_size = (96, 128)
    keypoints = np.stack([random_people(rng, n, *frame_size) for _ in range(frames)])
    h, w = G.map_size(*frame_size, cfg.map_downscale)
    flow = rng.normal(0, 2, (frames, h, w, 2)).astype(np.float32)
    present = G.present_characters(keypoints, cfg.keypoint_threshold, cfg.min_keypoints)
    near = G.nearness_from_feet(keypoints, present, cfg.keypoint_threshold)  # (T, P)
    for t in range(frames):  # ties are broken by track index, which a permutation changes
        assume(len(set(near[t, present[t]].tolist())) == present[t].sum())
    perm = rng.permutation(n)
    geo = G.clip_geometry(keypoints, flow, frame_size, cfg)
    permuted = G.clip_geometry(keypoints[:, perm], flow, frame_size, cfg)
    assert np.array_equal(geo.mask, permuted.mask)
    assert np.array_equal(geo.order, permuted.order)
    assert np.array_equal(geo.ranks[:, perm], permuted.ranks)
    approx = {k: pytest.approx(v) if isinstance(v, float) else v for k, v in permuted.stats.items()}
    assert geo.stats == approx
