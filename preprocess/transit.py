"""What travels between the Ray job's operators: one row per clip, its frames a numpy column.

The Ray job (``preprocess.ray_job``) passes one row per clip, plus one ``end`` row per video,
from the decode tasks through the model actors to the CPU tasks, which hand them to the
video's writer actor (``preprocess.writers``). A row is

    {"video_id": str, "frames": (T, H, W, 3) uint8, "item": bytes, "stored": int}

``frames`` is the clip's raw frames as a plain numpy array (an Arrow tensor column in Ray
Data's blocks: one buffer, no pickled object graph; ``(0, 1, 1, 3)`` when the row carries
none: end rows, failed clips, encoded clips, and clips whose later stages read no pixels —
``to_row(item, keep_frames=False)``; their clip then holds ``(T, 0, 0, 3)``, the frame count
without pixels); ``item`` is the rest of the :class:`Item` (its
small arrays and metadata), pickled without the frames; ``stored`` counts the bytes the item
has put into the object store so far (``Item.store_bytes``, rows and the encoded sample), which the writer sums into the run summary
(object-store bytes per stored frame ÷ the raw frame). :func:`video_items` makes a video's
items (its decoded clips, then its end marker) for the decode tasks and for the inline
layout's actors (``preprocess.inline``), which hand them straight to their own writer.
Nothing here imports Ray.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from preprocess.clip import Clip, EncodedClip, StageError, VideoInfo, video_id_for
from preprocess.config import PreprocessConfig
from preprocess.deadline import video_deadline
from preprocess.stages import Stage, StageFn, decoded_clips, finished, probe, run_stages

NO_FRAMES = np.zeros((0, 1, 1, 3), np.uint8)
"""The ``frames`` of a row that carries none (same rank as real frames: one tensor column)."""
COLUMNS = ("video_id", "frames", "item", "stored")


@dataclass
class Item:
    """What travels between the stages: one clip of a video, or the video's end marker."""

    kind: str
    """``clip`` | ``end``."""
    video_id: str
    source: str
    started: float
    """Epoch seconds at which the video's decode task started."""
    deadline: float | None = None
    clip: Clip | None = None
    encoded: EncodedClip | None = None
    info: VideoInfo | None = None
    """``end``: the probed video (None when probing failed)."""
    index: int = 0
    """``clip``: the clip's position in its video; ``end``: how many clips were emitted."""
    error: tuple[str, str] | None = None
    """(stage, message) of a failure (a StageError does not survive pickling as itself)."""
    raw_bytes: int = 0
    """``clip``: bytes of its raw frames (T * H * W * 3), set at decoding."""
    store_bytes: int = 0
    """Bytes this item has put into the object store so far (every row, and the encoded
    sample handed to the writer)."""

    def fail(self, err: StageError) -> None:
        """Turn the item into an error (its arrays are dropped: nothing of it is written)."""
        self.error, self.clip, self.encoded = (err.stage, err.message), None, None

    def advance(self, steps: Sequence[tuple[Stage, StageFn]], timeout_s: float, last: bool) -> None:
        """A clip through built stages; after the ``last`` ones only its encoded form goes on."""
        if self.kind != "clip" or self.error is not None or self.clip is None:
            return
        try:
            self.clip = run_stages(steps, self.clip, self.deadline, timeout_s)
            if last:
                self.encoded, self.clip = finished(self.clip), None
        except StageError as err:
            self.fail(err)

    def encoded_bytes(self) -> int:
        """Bytes of the encoded sample's fields (what the writer receives), 0 without one."""
        if self.encoded is None:
            return 0
        return sum(len(v) for v in self.encoded.fields.values() if not isinstance(v, str))


def to_row(item: Item, keep_frames: bool = True) -> dict[str, Any]:
    """The row of ``item``: its frames as a numpy column (without ``keep_frames``, none: no
    later stage reads them), the rest pickled; counted."""
    frames = NO_FRAMES
    light = item
    if item.clip is not None:
        if keep_frames:
            frames = item.clip.frames  # (T, H, W, 3) uint8
        count = item.clip.frames[:, :0, :0]  # (T, 0, 0, 3): the frame count, no pixels
        light = dataclasses.replace(item, clip=dataclasses.replace(item.clip, frames=count))
    blob = pickle.dumps(light, protocol=pickle.HIGHEST_PROTOCOL)
    item.store_bytes += frames.nbytes + len(blob)
    return {"video_id": item.video_id, "frames": frames, "item": blob, "stored": item.store_bytes}


def from_row(row: dict[str, Any]) -> Item:
    """The item of a row, its frames put back (a view of the row's array, not a copy) when
    the row carries them."""
    item: Item = pickle.loads(row["item"])
    item.store_bytes = int(row["stored"])
    frames = np.asarray(row["frames"])
    if item.clip is not None and len(frames):
        item.clip.frames = frames  # (T, H, W, 3) uint8
    return item


def rows_of(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a ``batch_format="numpy"`` batch."""
    n = len(batch["item"])
    return [{k: batch[k][i] for k in COLUMNS} for i in range(n)]


def batch_of(rows: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Rows as a numpy batch (frames of different shapes as an object array of arrays)."""
    frames = np.empty(len(rows), dtype=object)
    for i, r in enumerate(rows):
        frames[i] = r["frames"]
    return {
        "video_id": np.array([r["video_id"] for r in rows], dtype=object),
        "frames": frames,
        "item": np.array([r["item"] for r in rows], dtype=object),
        "stored": np.array([r["stored"] for r in rows], dtype=np.int64),
    }


def video_items(
    source: str, cfg: PreprocessConfig, steps: Sequence[tuple[Stage, StageFn]], last: bool
) -> Iterator[Item]:
    """One video's items: each clip as it is decoded, through ``steps`` (the ``last`` ones:
    only its encoded form goes on), then the video's end item (with the error, if any)."""
    started = time.time()
    deadline = video_deadline(cfg.run.video_timeout_s, started)
    head = Item("end", video_id_for(source), source, started, deadline)
    n = 0
    try:
        head.info = probe(source, cfg, deadline)
        for clip in decoded_clips(head.info, cfg, deadline):
            item = Item("clip", head.video_id, source, started, deadline, clip, index=n)
            item.raw_bytes = clip.frames.nbytes
            item.advance(steps, cfg.run.video_timeout_s, last=last)
            yield item
            n += 1
    except StageError as err:
        head.fail(err)
    head.index = n
    yield head
