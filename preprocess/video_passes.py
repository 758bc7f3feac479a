"""The Ray job's passes over its videos: what the driver keeps, and what it runs again.

``preprocess.ray_job.run_ray`` runs the Ray Data pipeline over the videos to do (a pass);
the writer actors commit whole videos into the output and report each one (a
``preprocess.writers.VideoReport``, a few hundred bytes). A pass can end early (Ray Data
raises when a node with work in flight is lost) or leave videos uncommitted (a writer died):
after each pass :class:`Passes` reads ``stats/videos`` (the only proof that a video is
committed) and keeps the videos not there for the next pass, at most ``run.max_retries``
more passes; the videos still missing then get a ``failed`` row at stage ``job``. The
summary is built from the committed rows and the writers' reports (stage times, object-store
bytes), plus the bytes the driver itself received. Nothing here imports Ray.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle

from preprocess.clip import StageError
from preprocess.config import PreprocessConfig
from preprocess.runner import RunSummary, failed_row, finished_sources
from preprocess.writers import VideoReport
from shards.reader import read_videos
from shards.schema import SHARD_PREFIX, VideoRow
from shards.writer import ShardWriter, remove_leftovers

log = logging.getLogger(__name__)
JOB_STAGE = "job"
"""``error_stage`` of a video the job could not finish in ``run.max_retries`` + 1 passes."""


class Passes:
    """The videos still to commit, pass after pass, and what the driver received."""

    def __init__(self, out: str, cfg: PreprocessConfig, todo: list[str]) -> None:
        self.out, self.cfg = out, cfg
        self.sources = list(todo)
        """Every video this run had to do."""
        self.todo = list(todo)
        """The videos not committed yet (all of them before the first pass)."""
        self.passes = 0
        self.reports: dict[str, VideoReport] = {}
        self.driver_bytes = 0
        """Bytes of the rows the driver received (the reports, the keys)."""

    def next_pass(self) -> bool:
        """Start a pass over :attr:`todo` (after the first: only what is still not committed);
        False when ``run.max_retries`` passes after the first are spent."""
        if self.passes:
            done = finished_sources(self.out)
            self.todo = [s for s in self.todo if s not in done]
            if not self.todo:
                return False
            if self.passes > self.cfg.run.max_retries:
                return False
            remove_leftovers(self.out)  # the lost writers' tmp and staging files
            log.warning(
                "pass %d: %d videos not committed yet run again", self.passes + 1, len(self.todo)
            )
        self.passes += 1
        return True

    def received(self, blob: bytes, other_bytes: int = 0) -> None:
        """One row of the pipeline: the pickled reports of the videos it finished."""
        self.add(pickle.loads(blob), len(blob) + other_bytes)

    def add(self, reports: list[VideoReport], nbytes: int) -> None:
        """Reports the driver received, in ``nbytes`` bytes."""
        self.driver_bytes += nbytes
        for report in reports:
            self.reports[report.row.video_id] = report

    def finish(self, skipped_done: int = 0) -> RunSummary:
        """Record the videos never committed as failed; the summary of the committed ones."""
        remove_leftovers(self.out)  # staging files of writers lost in the last pass
        done = finished_sources(self.out)
        lost = [s for s in self.sources if s not in done]
        if lost:
            err = StageError(JOB_STAGE, f"not committed after {self.passes} passes (lost work)")
            with ShardWriter(self.out, 1, prefix=f"{SHARD_PREFIX}-job") as writer:
                for source in lost:
                    log.error("giving up on %s: %s", source, err.message)
                    writer.add_video_row(failed_row(source, err, 0.0))
        summary = RunSummary(skipped_done=skipped_done, driver_bytes=self.driver_bytes)
        summary.passes = self.passes
        wanted = set(self.sources)
        try:
            stored_rows = read_videos(self.out).to_pylist() if wanted else []
        except FileNotFoundError:
            stored_rows = []
        rows = {r["video_id"]: r for r in stored_rows if r["source"] in wanted}
        for video_id, stored in rows.items():
            report = self.reports.get(video_id)
            if report is None or report.row.status != stored["status"]:
                names = {f.name for f in dataclasses.fields(VideoRow)}
                summary.add(VideoRow(**{k: v for k, v in stored.items() if k in names}))
                continue
            summary.add(report.row, report.times)
            summary.store_bytes += report.store_bytes
            summary.raw_bytes += report.raw_bytes
        return summary
