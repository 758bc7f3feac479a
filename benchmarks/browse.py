"""Speed of the dataset browser (``python -m shards browse``): building it, and opening it.

    .venv/bin/python benchmarks/browse.py                      # make demo's output + 10,000 clips
    .venv/bin/python benchmarks/browse.py --clips 50000 --screenshots out/shots
    .venv/bin/python benchmarks/browse.py --quick              # 1,000 synthetic clips only

1. Build time of the site for ``--root`` (make demo's output: thumbnails and videos of every
   clip, as ``make demo`` builds it).
2. Build time for a synthetic stats table of ``--clips`` clips (Parquet only, no shards, so
   no previews: the table, the plots and the summary are the cost that grows with clips).
3. In a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, paths given):
   page load of the synthetic site (``driver.get`` until the first page of rows is drawn,
   and the page's own ``performance.now()`` at that moment), then the time to sort all clips
   by ``bg_flow_mean`` and to apply a range filter, each until the page shows the result.

Screenshots of both pages go to ``--screenshots`` when given. Figures are wall-clock seconds
on this machine; the ratios printed compare the two builds of one run.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from shards.browse import build_site
from shards.reader import read_clips
from shards.schema import CLIP_SCHEMA, VIDEO_SCHEMA, ClipRow, VideoRow, rows_to_table

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1000",
)  # fmt: skip


def synthetic_output(root: Path, n: int, seed: int = 0) -> None:
    """Clips and videos tables of ``n`` clips (64 per video, 3 % of videos failed)."""
    rng = np.random.default_rng(seed)
    n_videos = max(1, n // 64)
    clips = []
    for j in range(n):
        v, i = j % n_videos, j // n_videos
        chars = int(rng.choice(4, p=[0.05, 0.6, 0.3, 0.05]))
        occ = float(rng.beta(2, 12)) if chars >= 2 else None
        clips.append(
            ClipRow(
                key=f"{v:016x}_{64 * i:07d}", shard=f"shard-{j // 256:06d}.tar",
                video_id=f"{v:016x}", source=f"s3://bucket/videos/{v:06d}.mp4", clip_index=i,
                start_frame=64 * i, end_frame=64 * i + 63, n_frames=64, fps=30.0, width=640,
                height=360, map_width=160, map_height=90, n_tracks=chars + 1,
                bg_flow_mean=float(rng.lognormal(0.5, 1.2)), bg_flow_p95=float(rng.lognormal(1.5, 1)),
                occlusion_rate_mean=occ, occlusion_rate_max=None if occ is None else 2 * occ,
                characters_max=chars, characters_mode=chars, multi_character_frac=float(chars >= 2),
                pose_score_mean=float(rng.uniform(0.3, 0.9)), seconds_decode=0.1, seconds_pose=1.0,
            )
        )  # fmt: skip
    videos = [
        VideoRow(video_id=f"{v:016x}", source=f"s3://bucket/videos/{v:06d}.mp4", status="ok")
        for v in range(n_videos)
    ]
    for v in range(max(1, n_videos * 3 // 100)):
        videos.append(
            VideoRow(video_id=f"{10**9 + v:016x}", source=f"s3://bucket/bad/{v}.mp4",
                     status="failed", error_stage="decode", error="DecodeError: damaged")
        )  # fmt: skip
    for sub, rows, schema in (("clips", clips, CLIP_SCHEMA), ("videos", videos, VIDEO_SCHEMA)):
        (root / "stats" / sub).mkdir(parents=True, exist_ok=True)
        pq.write_table(rows_to_table(rows, schema), root / "stats" / sub / "shard-000000.parquet")


def timed_build(root: Path, site: Path) -> float:
    start = time.perf_counter()
    build_site(root, site)
    return time.perf_counter() - start


def chromium(work: Path) -> Any:
    """Headless Chromium with a fresh profile (and downloads) under ``work``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={work / 'chromium-profile'}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(work)})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def until(driver: Any, script: str, timeout: float = 60) -> float:
    """Seconds until the JavaScript expression ``script`` is true (polled every 10 ms)."""
    start = time.perf_counter()
    while not driver.execute_script(f"return Boolean({script})"):
        if time.perf_counter() - start > timeout:
            raise TimeoutError(script)
        time.sleep(0.01)
    return time.perf_counter() - start


def page_times(driver: Any, site: Path, n: int) -> dict[str, float]:
    start = time.perf_counter()
    driver.get((site / "index.html").as_uri())
    until(driver, "document.body.dataset.ready === 'true'")
    load = time.perf_counter() - start
    in_page = driver.execute_script("return window.MCANIM_READY_MS") / 1000
    assert driver.execute_script("return document.querySelectorAll('#clips tbody tr').length") == 50
    first = driver.execute_script("return document.querySelector('#clips tbody tr').dataset.key")
    start = time.perf_counter()
    driver.execute_script("document.querySelector('button.sort[data-col=bg_flow_mean]').click()")
    until(driver, f"document.querySelector('#clips tbody tr').dataset.key !== '{first}'")
    sort = time.perf_counter() - start
    sort_in_page = driver.execute_script("return window.MCANIM_APPLY_MS") / 1000
    box = "input[data-col=bg_flow_mean][data-bound=min]"
    start = time.perf_counter()
    driver.execute_script(
        f"const b = document.querySelector('{box}'); b.value = '5'; "
        "b.dispatchEvent(new Event('input'))"
    )
    until(driver, f"!document.getElementById('row-count').textContent.startsWith('{n} of')")
    filtered = time.perf_counter() - start - 0.12  # minus the page's 120 ms input debounce
    filter_in_page = driver.execute_script("return window.MCANIM_APPLY_MS") / 1000
    return {
        "load": load, "in_page": in_page, "sort": sort, "sort_in_page": sort_in_page,
        "filter": filtered, "filter_in_page": filter_in_page,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(REPO / "out" / "demo"), help="a real output")
    parser.add_argument("--clips", type=int, default=10_000, help="clips of the synthetic table")
    parser.add_argument("--screenshots", help="folder for the two pages' screenshots")
    parser.add_argument("--quick", action="store_true", help="1,000 synthetic clips, no --root")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    n = 1000 if args.quick else args.clips
    work = Path(tempfile.mkdtemp(prefix="browse-bench-"))
    shots = Path(args.screenshots) if args.screenshots else None
    try:
        rows = []
        demo_site = work / "demo-site"
        if not args.quick:
            clips = read_clips(args.root).num_rows
            demo_build = timed_build(Path(args.root), demo_site)
            rows.append(
                f"| build, {args.root} ({clips} clips, previews of all) | {demo_build:.2f} s |"
            )
        synthetic_output(work / "synthetic", n)
        build = timed_build(work / "synthetic", work / "site")
        size = (work / "site" / "data.js").stat().st_size / 1e6
        rows.append(
            f"| build, synthetic stats table ({n} clips; data.js {size:.1f} MB) | {build:.2f} s |"
        )
        driver = chromium(work)
        try:
            times = page_times(driver, work / "site", n)
            if shots:
                shots.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(shots / f"browse-{n}.png"))
                if not args.quick:
                    driver.get((demo_site / "index.html").as_uri())
                    until(driver, "document.body.dataset.ready === 'true'")
                    driver.save_screenshot(str(shots / "browse-demo.png"))
        finally:
            driver.quit()
        rows += [
            f"| page load in headless Chromium, {n} clips (driver.get -> rows drawn) | {times['load']:.2f} s |",
            f"| ... of which in the page (performance.now at first render) | {times['in_page']:.2f} s |",
            f"| sort {n} clips by bg_flow_mean (click -> new first row, polled) | {times['sort']:.3f} s |",
            f"| ... of which in the page (filter + sort + draw the page) | {times['sort_in_page']:.3f} s |",
            f"| range filter bg_flow_mean >= 5 (input -> count shown, polled, debounce excluded) | {times['filter']:.3f} s |",
            f"| ... of which in the page | {times['filter_in_page']:.3f} s |",
        ]  # fmt: skip
        if not args.quick:
            rows.append(
                f"| ratio: build of {n} clips / build of the demo | {build / demo_build:.2f} |"
            )
        print("| step | time |\n|---|---:|\n" + "\n".join(rows))
        if shots:
            print(f"screenshots: {sorted(str(p) for p in shots.glob('browse-*.png'))}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
