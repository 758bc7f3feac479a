"""One example from one decoded clip: frame choice, crop, the guider inputs.

Pure NumPy on a :class:`shards.schema.Sample`. Two ways, one canvas:

- :func:`build_example` is a *training* example (the loader, ``train/loader.py``, calls it in
  its workers): the guider inputs are built by
  :func:`preprocess.geometry.canvas.build_guider_arrays`, the function inference uses, from
  the stored keypoints brought to the training canvas
  (:class:`preprocess.geometry.canvas.Crop`): skeletal dilation regions drawn at the canvas
  resolution (the dataset's ``geometry``); the flow guider input ``(1 - M) * F / s + M``
  (docs/design.md §3) of the clip's stored backward flow, resized to the canvas and expressed
  in canvas pixels per frame (:meth:`Crop.flow`); the depth-order map of the stored per-frame
  ranks, renumbered among the characters on the canvas
  (:func:`preprocess.geometry.canvas.canvas_ranks`); the reference pose map.
- :func:`inference_example` is the clip as ``python -m model.animate`` would animate it
  (training validation and ``python -m train.evaluate`` use it): zero background flow and the
  reference frame's depth order held for every frame (:func:`model.inputs.reference_order`,
  :func:`model.inputs.guider_arrays`), the extractor outputs read from the clip instead of
  recomputed (its stored poses, and its stored depth map of the reference frame or the feet
  heuristic, as the dataset's depth backend gives them).

Only the guider inputs the model has are built (``inputs``). The reference image is
CLIP-preprocessed exactly as inference does it (:func:`model.components.build_image_processor`
on the cropped reference).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from transformers import CLIPImageProcessorPil

from model.inputs import guider_arrays, reference_order
from preprocess.geometry.canvas import GUIDER_INPUTS, Crop, GuiderArrays, build_guider_arrays
from preprocess.geometry.config import GeometryConfig
from shards.schema import Sample

Size = tuple[int, int]


class BadSample(ValueError):
    """A clip that cannot give a training example; ``reason`` names the counter."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass
class Example:
    """One training example (numpy, channels last) before batching."""

    key: str
    frames: np.ndarray  # (F, H, W, 3) uint8 target frames on the canvas
    reference: np.ndarray  # (H, W, 3) uint8 reference frame on the canvas
    clip_pixels: np.ndarray  # (3, S, S) float32 CLIP-preprocessed reference
    guiders: GuiderArrays  # pose (F, H, W, 3), flow (F, H, W, 2), order (F, H, W), ref pose
    # (each None when not built)
    reference_index: int
    frame_indices: list[int]


def needed_frames(frames: int, stride: int) -> int:
    """Clip length a window of ``frames`` frames ``stride`` apart needs."""
    return (frames - 1) * stride + 1


def pick_frames(
    n_frames: int, frames: int, stride: int, rng: np.random.Generator
) -> tuple[int, list[int]]:
    """(reference index, target indices): a random window of ``frames`` frames ``stride``
    apart, and a random reference frame of the clip (another frame than a single target
    whenever the clip has two)."""
    span = needed_frames(frames, stride)
    if n_frames < span:
        raise BadSample("short", f"{n_frames} frames, a window needs {span}")
    start = int(rng.integers(0, n_frames - span + 1))
    targets = list(range(start, start + span, stride))
    reference = int(rng.integers(0, n_frames))
    if frames == 1 and n_frames > 1 and reference == targets[0]:
        reference = (reference + 1 + int(rng.integers(0, n_frames - 1))) % n_frames
    return reference, targets


def check_sample(sample: Sample, flow: bool = True) -> None:
    """Raise :class:`BadSample` when the fields of a decoded clip do not fit together
    (``flow``: the clip's flow is used, so it is checked too)."""
    t = len(sample.frames)
    if t == 0 or sample.frames.ndim != 4:
        raise BadSample("shape", f"no frames ({sample.frames.shape})")
    if sample.pose.shape[:1] != (t,) or sample.ranks.shape != sample.pose.shape[:2]:
        raise BadSample(
            "shape",
            f"frames {t}, pose {sample.pose.shape}, ranks {sample.ranks.shape} disagree",
        )
    if flow and (sample.flow.shape[0] != t or sample.flow.ndim != 4):
        raise BadSample("shape", f"flow {sample.flow.shape} for {t} frames")
    if not np.isfinite(sample.pose).all() or (flow and not np.isfinite(sample.flow).all()):
        raise BadSample("nonfinite", "NaN or inf in pose or flow")


def _example(
    sample: Sample,
    crop: Crop,
    reference_index: int,
    idx: np.ndarray,
    guiders: GuiderArrays,
    processor: CLIPImageProcessorPil,
) -> Example:
    reference = crop.image(sample.frames[reference_index])  # (H, W, 3)
    clip_pixels = processor(images=reference, return_tensors="np")["pixel_values"][0]
    return Example(
        key=sample.key,
        frames=np.stack([crop.image(sample.frames[i]) for i in idx]),
        reference=reference,
        clip_pixels=np.asarray(clip_pixels, np.float32),
        guiders=guiders,
        reference_index=reference_index,
        frame_indices=[int(i) for i in idx],
    )


def build_example(
    sample: Sample,
    reference_index: int,
    frame_indices: list[int],
    size: Size,
    geo: GeometryConfig,
    processor: CLIPImageProcessorPil,
    inputs: Collection[str] = GUIDER_INPUTS,
) -> Example:
    """The training example of ``sample`` with the given reference and target frames on a
    canvas of ``size`` (height, width): the guider ``inputs`` named (the model's guiders)
    from the stored flow and per-frame ranks."""
    check_sample(sample, flow="flow" in inputs)
    crop = Crop(sample.frames.shape[1:3], size)
    idx = np.asarray(frame_indices)
    driving = crop.keypoints(sample.pose[idx])  # (F, P, 133, 3) canvas pixels
    reference_kps = crop.keypoints(sample.pose[reference_index])  # (P, 133, 3)
    flow = np.stack([crop.flow(sample.flow[i]) for i in idx]) if "flow" in inputs else None
    keys = sample.ranks[idx]  # (F, P) whole-frame ranks: the front-to-back keys
    guiders = build_guider_arrays(driving, reference_kps, keys, size, geo, flow, inputs)
    return _example(sample, crop, reference_index, idx, guiders, processor)


def inference_example(
    sample: Sample,
    reference_index: int,
    frame_indices: list[int],
    size: Size,
    geo: GeometryConfig,
    processor: CLIPImageProcessorPil,
    inputs: Collection[str] = GUIDER_INPUTS,
) -> Example:
    """``sample`` as ``python -m model.animate`` would animate it from its frame
    ``reference_index`` and its poses ``frame_indices``: zero background flow, the reference
    frame's depth order (its stored depth map on the canvas, or the feet heuristic when the
    dataset has none) matched to the driving tracks and held for every frame. The pose maps
    are always made (they are shown next to the result)."""
    check_sample(sample, flow=False)
    crop = Crop(sample.frames.shape[1:3], size)
    idx = np.asarray(frame_indices)
    driving = crop.keypoints(sample.pose[idx])  # (F, P, 133, 3) canvas pixels
    reference_kps = crop.keypoints(sample.pose[reference_index])  # (P, 133, 3)
    depth = None if sample.depth is None else crop.depth(sample.depth[reference_index])
    _, priority = reference_order(reference_kps, driving, size, geo, depth)
    made = {"pose", *inputs}
    guiders = guider_arrays(driving, reference_kps, priority, size, geo, made)
    return _example(sample, crop, reference_index, idx, guiders, processor)
