"""The streaming loader: shards of a preprocessing output -> typed :class:`Batch` es.

::

    clips table --data.keys file, data.where (DuckDB)--> selected keys, oversampling,
        held-out keys
    shard list --seeded shuffle per epoch--> split by rank x worker (shards; samples if
        there are fewer shards than readers) --shards.reader.iter_raw--> encoded clips
        --key filter, repeats--> seeded shuffle buffer (encoded bytes)
        --skip what a resumed run already consumed--> shards.codec.decode_sample (only the
        fields the model's guiders use) --train.examples.build_example (only the inputs of the
        model's guiders)--> Example --collate--> Batch (one worker per batch)

Every random choice is seeded: the shard order by (seed, epoch), the shuffle buffer by
(seed, epoch, stream), the frames of a clip by (seed, epoch, key, repeat). A *stream* is one
(rank, worker) reader; its sequence of clips is a pure function of the seed, the dataset and
the number of readers. A batch records the stream it came from and the position of its last
clip, and a resumed run skips each stream's consumed clips without decoding them and
rotates the workers so that the DataLoader's round-robin continues with the stream that was
next (see docs/train.md, "Resuming").

A clip that fails (decode error, inconsistent fields, too short for the window, non-finite
values) is skipped and counted by reason; the counts travel with the next batch.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from model.components import build_image_processor
from model.config import ModelConfig
from model.guiders import Conditions
from preprocess.config import read_output_config
from preprocess.geometry.config import GeometryConfig
from shards.codec import decode_sample
from shards.keys import keys_in_table, read_keys
from shards.reader import filter_table, iter_raw, read_clips, shard_paths
from train.config import DataConfig
from train.examples import BadSample, Example, build_example, pick_frames

log = logging.getLogger(__name__)

Position = tuple[int, int]  # (epoch, index of the last consumed clip in the stream's epoch)
TRAINING_FIELDS = ("mp4", "pose.npy", "ranks.npy", "json")
"""Sample fields a training example needs (plus ``flow.npz`` with a flow guider); the stored
masks, order maps and depth are redrawn or unused, so never decoded."""


def _hash(*parts: object) -> int:
    """A stable 63-bit seed of ``parts`` (Python's ``hash`` of strings is salted per process)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# ---- selection ------------------------------------------------------------------------------
@dataclass
class Selection:
    """Which clips a run reads: training keys with their repeat weight, held-out keys."""

    shards: list[str]
    """Shard paths holding at least one training clip (sorted)."""
    repeats: dict[str, float]
    """Training key -> reads per epoch (1.0, or ``multi_character_repeat`` for clips with
    two or more characters)."""
    holdout: list[str]
    """Keys kept out of training for validation."""


def select_clips(cfg: DataConfig, holdout: int) -> Selection:
    """Keep the clips of the ``data.keys`` file (if set) that match ``data.where`` and set
    ``holdout`` clips aside (the clips with the smallest hash of ``(seed, key)``, so the
    choice is stable and spread)."""
    table = read_clips(cfg.root)
    if cfg.keys:
        table = keys_in_table(table, read_keys(cfg.keys), f"data.keys={cfg.keys}")
    if cfg.where:
        table = filter_table(table, cfg.where, "clips")
    table = table.select(["key", "shard", "characters_max"])
    keys = table["key"].to_pylist()
    if len(keys) <= holdout:
        chosen = f"data.where={cfg.where!r}" + (f" and data.keys={cfg.keys}" if cfg.keys else "")
        raise ValueError(
            f"{cfg.root}: {len(keys)} clip(s) match {chosen}; training needs "
            f"more than the {holdout} held out for validation (validation.clips)"
        )
    held = sorted(keys, key=lambda k: _hash(cfg.seed, "holdout", k))[:holdout]
    multi = dict(zip(keys, table["characters_max"].to_pylist(), strict=True))
    repeats = {
        k: cfg.multi_character_repeat if (multi[k] or 0) >= 2 else 1.0
        for k in keys
        if k not in held
    }
    names = {s for k, s in zip(keys, table["shard"].to_pylist(), strict=True) if k in repeats}
    shards = [p for p in shard_paths(cfg.root) if Path(p).name in names]
    log.info(
        "data: %d clip(s) selected by %r%s, %d held out, %d in %d shard(s)",
        len(keys),
        cfg.where,
        f" and keys file {cfg.keys}" if cfg.keys else "",
        len(held),
        len(repeats),
        len(shards),
    )
    return Selection(shards, repeats, held)


def dataset_geometry(root: str) -> GeometryConfig:
    """The ``geometry`` section of the output's resolved preprocessing config (its format
    version checked, :func:`preprocess.config.read_output_config`)."""
    try:
        return read_output_config(root).geometry
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{exc}: data.root must be a preprocessing output") from None


# ---- batches --------------------------------------------------------------------------------
@dataclass
class Batch:
    """A batch of examples from one stream, channels first, compact dtypes."""

    keys: list[str]
    frames: torch.Tensor  # (B, F, 3, H, W) uint8 target frames
    reference: torch.Tensor  # (B, 3, H, W) uint8 reference frame
    clip_pixels: torch.Tensor  # (B, 3, S, S) float32 CLIP-preprocessed reference
    pose: torch.Tensor | None  # (B, F, 3, H, W) uint8 pose maps
    flow: torch.Tensor | None  # (B, F, 2, H, W) float32 flow guider input
    order: torch.Tensor | None  # (B, F, 1, H, W) uint8 depth-order maps
    reference_pose: torch.Tensor | None  # (B, 1, 3, H, W) uint8 reference pose map
    """Guider inputs; None for a guider the model does not have (not built)."""
    stream: int = 0
    """Logical stream (rank-local worker slot) that produced the batch."""
    position: Position = (0, -1)
    """(epoch, index) of the batch's last clip in its stream."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Clips skipped since the stream's previous batch, by reason."""

    def conditions(
        self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> Conditions:
        """Float guider inputs by :meth:`model.guiders.Conditions.from_maps`, the conversion
        inference uses: pose and order maps / 255, flow input as is (moved as uint8,
        converted on ``device``)."""
        return Conditions.from_maps(
            self.pose, self.flow, self.order, self.reference_pose, device=device, dtype=dtype
        )

    def pixels(
        self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(target frames (B, F, 3, H, W), reference (B, 3, H, W)) in [-1, 1]."""

        def signed(t: torch.Tensor) -> torch.Tensor:
            return (t.to(device, non_blocking=True).float() / 127.5 - 1).to(dtype)

        return signed(self.frames), signed(self.reference)

    def pin_memory(self) -> Batch:
        tensors = ("frames", "reference", "clip_pixels", "pose", "flow", "order")
        for name in (*tensors, "reference_pose"):
            tensor = getattr(self, name)
            if tensor is not None:
                setattr(self, name, tensor.pin_memory())
        return self


def _chw(a: np.ndarray) -> torch.Tensor:
    """(..., H, W, C) -> (..., C, H, W) tensor (no copy of the data beyond contiguity)."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, -3)))


def _stacked(arrays: list[np.ndarray | None]) -> torch.Tensor | None:
    """(B, ..., H, W, C) channels first, or None when the input was not built."""
    if any(a is None for a in arrays):
        return None
    return torch.stack([_chw(a) for a in arrays if a is not None])


def collate(items: list[tuple[Example, int, Position, Counter[str]]]) -> Batch:
    """Stack examples of one stream into a :class:`Batch`."""
    examples = [e for e, *_ in items]
    skipped: Counter[str] = Counter()
    for *_, c in items:
        skipped.update(c)
    _, stream, position, _ = items[-1]
    return Batch(
        keys=[e.key for e in examples],
        frames=torch.stack([_chw(e.frames) for e in examples]),
        reference=torch.stack([_chw(e.reference) for e in examples]),
        clip_pixels=torch.stack([torch.from_numpy(e.clip_pixels) for e in examples]),
        pose=_stacked([e.guiders.pose for e in examples]),
        flow=_stacked([e.guiders.flow for e in examples]),
        order=_stacked(
            [None if (o := e.guiders.order) is None else o[..., None] for e in examples]
        ),
        reference_pose=_stacked(
            [None if (r := e.guiders.reference_pose) is None else r[None] for e in examples]
        ),
        stream=stream,
        position=position,
        skipped=dict(skipped),
    )


# ---- the stream -----------------------------------------------------------------------------
class ClipStream(IterableDataset):
    """Endless, seeded, rank- and worker-split stream of training examples."""

    def __init__(
        self,
        cfg: DataConfig,
        selection: Selection,
        frames: int,
        geometry: GeometryConfig,
        model_cfg: ModelConfig,
        *,
        rank: int = 0,
        world_size: int = 1,
        start: dict[int, Position] | None = None,
        rotate: int = 0,
    ) -> None:
        super().__init__()
        if not selection.shards:
            raise ValueError(f"{cfg.root}: no shard holds a selected training clip")
        self.cfg = cfg
        self.selection = selection
        self.frames = frames
        self.geometry = geometry
        self.model_cfg = model_cfg
        self.rank = rank
        self.world_size = world_size
        self.start = dict(start or {})
        self.rotate = rotate

    # Which stream this worker serves, and how the readers share the data.
    def _stream(self) -> tuple[int, int]:
        info = get_worker_info()
        workers = info.num_workers if info is not None else 1
        worker = info.id if info is not None else 0
        return (worker + self.rotate) % workers, workers

    def __iter__(self) -> Iterator[tuple[Example, int, Position, Counter[str]]]:
        cv2.setNumThreads(1)
        if get_worker_info() is not None:
            torch.set_num_threads(1)
        stream, workers = self._stream()
        slot, readers = self.rank * workers + stream, self.world_size * workers
        processor = build_image_processor(self.model_cfg)
        size = (self.cfg.height, self.cfg.width)
        first, skip_to = self.start.get(stream, (0, -1))
        skipped: Counter[str] = Counter()
        for epoch in count(first):
            produced, tried, made = False, 0, 0
            for index, raw in self._raw(epoch, slot, readers):
                produced = True
                if index <= skip_to:
                    continue  # consumed before the resume: not even decoded
                tried += 1
                try:
                    example = self._example(raw, epoch, size, processor)
                except BadSample as exc:
                    skipped[exc.reason] += 1
                    log.warning("skipping clip %s: %s", raw.get("__key__"), exc)
                    continue
                except Exception as exc:  # a broken clip must never stop training
                    skipped["decode"] += 1
                    log.warning("skipping clip %s: %s: %s", raw.get("__key__"), type(exc), exc)
                    continue
                made += 1
                yield example, stream, (epoch, index), skipped
                skipped = Counter()
            if tried and not made:  # every clip failed: looping on would hang training
                raise RuntimeError(
                    f"data stream {stream} of rank {self.rank}: all {tried} clips of epoch "
                    f"{epoch} were skipped ({dict(skipped)}); see the warnings above"
                )
            skip_to = -1
            if not produced:
                log.error("data stream %d of rank %d received no clips", stream, self.rank)
                return

    def _raw(self, epoch: int, slot: int, readers: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """(index, encoded clip) of this reader's share of ``epoch``, shuffled."""
        shards = list(self.selection.shards)
        np.random.default_rng(_hash(self.cfg.seed, "shards", epoch)).shuffle(shards)
        by_shard = len(shards) >= readers
        mine = shards[slot::readers] if by_shard else shards
        raw = self._selected(epoch, iter_raw(mine))
        if not by_shard:
            raw = (r for i, r in enumerate(raw) if i % readers == slot)
        buffer = self.cfg.shuffle_buffer
        if buffer > 1:
            seed = _hash(self.cfg.seed, "buffer", epoch, slot)
            raw = wds.shuffle(bufsize=buffer, initial=buffer, seed=seed)(raw)
        yield from enumerate(raw)

    def _selected(self, epoch: int, raw: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Selected clips only, each repeated by its oversampling weight."""
        for sample in raw:
            weight = self.selection.repeats.get(sample["__key__"])
            if weight is None:
                continue
            times = int(weight)
            frac = weight - times
            if frac > 0:
                coin = np.random.default_rng(
                    _hash(self.cfg.seed, "repeat", epoch, sample["__key__"])
                )
                times += int(coin.random() < frac)
            for r in range(times):
                yield {**sample, "__repeat__": r}

    def _example(
        self, raw: dict[str, Any], epoch: int, size: tuple[int, int], processor: Any
    ) -> Example:
        inputs = self.model_cfg.guiders.names
        sample = decode_sample(raw, TRAINING_FIELDS + (("flow.npz",) if "flow" in inputs else ()))
        rng = np.random.default_rng(
            _hash(self.cfg.seed, "frames", epoch, sample.key, raw["__repeat__"])
        )
        reference, targets = pick_frames(
            len(sample.frames), self.frames, self.cfg.frame_stride, rng
        )
        return build_example(sample, reference, targets, size, self.geometry, processor, inputs)


def make_loader(dataset: ClipStream, batch_size: int) -> DataLoader:
    """The DataLoader of a stream: each worker batches its own clips, in order."""
    workers = dataset.cfg.workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        collate_fn=collate,
        num_workers=workers,
        prefetch_factor=dataset.cfg.prefetch if workers > 0 else None,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
        multiprocessing_context="fork" if workers > 0 and os.name == "posix" else None,
    )
