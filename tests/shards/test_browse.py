"""``python -m shards browse`` as a user meets it: the site opened from ``file://`` in a real
headless Chromium (Debian's ``chromium`` + ``chromium-driver``, ``make system-deps``) driven by
Selenium with both paths given, so nothing is ever downloaded.

The output is ``make demo``'s job (the CPU preset on the two shared videos, shortened to 32
frames each in clips of 16) plus an input that is not a video, so the failed-videos table has
a row. A pagination test uses a synthetic 120-clip table without shards.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import shards.reader
from preprocess.__main__ import main as preprocess_main
from shards.__main__ import main
from shards.browse import build_site
from shards.reader import read_clips
from shards.schema import CLIP_SCHEMA, VIDEO_SCHEMA, ClipRow, VideoRow, rows_to_table

REPO = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,1000",
)  # fmt: skip
WINDOW = (1400, 1000)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, vtest: Path, dance: Path) -> Path:
    """make demo's preprocessing job, shortened, with one input that fails to decode."""
    inputs = tmp_path_factory.mktemp("inputs")
    for video in (vtest, dance):
        shutil.copy(video, inputs / video.name)
    (inputs / "notes.mp4").write_text("not a video\n")
    out = tmp_path_factory.mktemp("demo") / "out"
    overrides = [
        "decode.max_frames=32", "decode.clip_frames=16", "run.runner=local",
        "shards.max_clips=2", "shards.x264_preset=ultrafast", "pose.input_size=256",
    ]  # fmt: skip
    config = REPO / "jobs" / "preprocess" / "cpu_fast.yaml"  # MoveNet MultiPose: fast
    argv = ["--config", str(config), "--output", str(out), "--input", str(inputs)]
    assert preprocess_main([*argv, *overrides]) == 0
    return out


@pytest.fixture(scope="module")
def site(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    assert main(["browse", str(demo), "--out", str(folder)]) == 0
    return folder


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path) -> Iterator[Any]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: run 'make system-deps' (Debian chromium)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    prefs = {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    options.add_experimental_option("prefs", prefs)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver: Any, site: Path) -> Any:
    driver.get((site / "index.html").as_uri())
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready") == "true")
    return driver


def wait(driver: Any, condition: Callable[[Any], Any], timeout: float = 20) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def row_keys(driver: Any) -> list[str]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#clips tbody tr")
    return [r.get_attribute("data-key") for r in rows]


def type_filter(driver: Any, column: str, bound: str, text: str) -> None:
    box = driver.find_element(By.CSS_SELECTOR, f"input[data-col={column}][data-bound={bound}]")
    box.clear()
    box.send_keys(text)


def count_is(n: int) -> Callable[[Any], bool]:
    return lambda d: d.find_element(By.ID, "row-count").text.startswith(f"{n} of ")


def first_row_is_not(key: str) -> Callable[[Any], bool]:
    return lambda d: row_keys(d)[0] != key


def sorted_keys(clips: list[dict[str, Any]], column: str, reverse: bool) -> list[str]:
    """Keys ordered by ``column`` (ties in table order, nulls last), written out here."""
    known = [c for c in clips if c[column] is not None]
    known.sort(key=lambda c: c[column], reverse=reverse)  # stable: ties keep table order
    return [c["key"] for c in known] + [c["key"] for c in clips if c[column] is None]


# -- the demo output in the browser ----------------------------------------------------------


def test_the_page_loads_offline_and_shows_every_clip(browser: Any, site: Path, demo: Path) -> None:
    open_page(browser, site)
    assert errors(browser) == []
    assert row_keys(browser) == read_clips(demo)["key"].to_pylist()
    urls = browser.execute_script(
        "return [...document.querySelectorAll('[src], [href]')].map(e => e.src || e.href)"
    )
    assert urls and all(u.startswith("file://") for u in urls), urls  # nothing from a network
    plots = browser.find_elements(By.CSS_SELECTOR, "#plots img")
    assert len(plots) == 3
    assert all(browser.execute_script("return arguments[0].naturalWidth", p) > 0 for p in plots)
    thumbs = browser.find_elements(By.CSS_SELECTOR, "img.thumb")
    assert len(thumbs) == len(row_keys(browser))
    wait(browser, lambda d: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", t) for t in thumbs))  # fmt: skip
    assert errors(browser) == []


def test_failed_videos_are_listed_with_stage_and_reason(browser: Any, site: Path) -> None:
    open_page(browser, site)
    rows = browser.find_elements(By.CSS_SELECTOR, "#problems tbody tr")
    cells = [c.text for c in rows[0].find_elements(By.TAG_NAME, "td")]
    assert len(rows) == 1
    assert cells[:3] == ["failed", "decode", "DecodeError"] and cells[3].endswith("notes.mp4")


def test_sorting_by_bg_flow_mean_reorders_the_rows(browser: Any, site: Path, demo: Path) -> None:
    open_page(browser, site)
    clips = read_clips(demo).to_pylist()
    before = row_keys(browser)
    browser.find_element(By.CSS_SELECTOR, "button.sort[data-col=bg_flow_mean]").click()
    ascending = sorted_keys(clips, "bg_flow_mean", reverse=False)
    wait(browser, lambda d: row_keys(d) == ascending)
    assert ascending != before
    browser.find_element(By.CSS_SELECTOR, "button.sort[data-col=bg_flow_mean]").click()
    wait(browser, lambda d: row_keys(d) == sorted_keys(clips, "bg_flow_mean", reverse=True))
    assert errors(browser) == []


def test_filters_equal_their_where_expression(browser: Any, site: Path, demo: Path) -> None:
    open_page(browser, site)
    clips = read_clips(demo).to_pylist()
    values = sorted(c["bg_flow_mean"] for c in clips if c["bg_flow_mean"] is not None)
    threshold = f"{(values[1] + values[2]) / 2:.6f}"  # two clips below, the rest above
    above = [c for c in clips if c["bg_flow_mean"] is not None]
    expected = [c["key"] for c in above if c["bg_flow_mean"] >= float(threshold)]
    type_filter(browser, "bg_flow_mean", "min", threshold)
    wait(browser, count_is(len(expected)))
    assert row_keys(browser) == expected and len(expected) == len(values) - 2
    type_filter(browser, "source", "text", "DANCE")  # case-insensitive, like the expression
    both = [c["key"] for c in clips if c["key"] in expected and "dance" in c["source"].lower()]
    wait(browser, lambda d: "dance" in d.find_element(By.ID, "where").text)
    wait(browser, count_is(len(both)))
    where = browser.find_element(By.ID, "where").text
    assert where == f"contains(lower(source), 'dance') and bg_flow_mean >= {float(threshold)!r}"
    assert read_clips(demo, where=where)["key"].to_pylist() == row_keys(browser) == both
    search = browser.find_element(By.ID, "search")
    search.send_keys("VTEST")
    wait(browser, lambda d: "vtest" in d.find_element(By.ID, "where").text)
    wait(browser, count_is(0))  # dance and vtest: nothing is both
    where = browser.find_element(By.ID, "where").text
    assert read_clips(demo, where=where).num_rows == 0 and "contains(lower(key), 'vtest')" in where
    browser.find_element(By.ID, "clear-filters").click()
    wait(browser, count_is(len(clips)))


def test_export_writes_a_keys_file_that_select_accepts(
    browser: Any, site: Path, demo: Path, downloads: Path, tmp_path: Path
) -> None:
    open_page(browser, site)
    type_filter(browser, "characters_max", "min", "2")
    expected = read_clips(demo, where="characters_max >= 2")["key"].to_pylist()
    wait(browser, count_is(len(expected)))
    assert expected and len(expected) < len(read_clips(demo))
    exported = download_keys(browser, downloads)
    assert exported.read_text().splitlines() == expected
    assert main(["select", str(demo), "--where", "characters_max >= 2", "--to", str(tmp_path / "k.txt")]) == 0  # fmt: skip
    assert exported.read_bytes() == (tmp_path / "k.txt").read_bytes()
    assert main(["select", str(demo), "--keys", str(exported), "--to", str(tmp_path / "s.json")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "s.json").read_text())["keys"] == expected
    boxes = browser.find_elements(By.CSS_SELECTOR, "input.row-check")
    boxes[-1].click()  # a checked row: the export is the checked rows only
    assert download_keys(browser, downloads).read_text() == f"{expected[-1]}\n"
    assert errors(browser) == []


def download_keys(driver: Any, folder: Path) -> Path:
    for old in folder.glob("keys*.txt"):
        old.unlink()
    driver.find_element(By.ID, "export").click()
    target = folder / "keys.txt"
    wait(driver, lambda d: target.exists() and not list(folder.glob("*.crdownload")))
    assert driver.find_element(By.ID, "export-text").get_attribute("value") == target.read_text()
    return target


def test_a_clip_plays_and_the_screenshot_is_not_blank(
    browser: Any, site: Path, demo: Path, tmp_path: Path
) -> None:
    open_page(browser, site)
    first = read_clips(demo).to_pylist()[0]
    browser.find_elements(By.CSS_SELECTOR, "img.thumb")[0].click()
    video = browser.find_element(By.ID, "player-video")
    wait(browser, lambda d: d.execute_script("return arguments[0].readyState", video) >= 2)
    assert browser.execute_script("return arguments[0].videoWidth", video) == first["width"]
    shot = tmp_path / "browser.png"
    assert browser.save_screenshot(str(shot))
    print(f"screenshot of the browser: {shot}")  # pytest -rP shows it
    image = cv2.imread(str(shot))
    viewport = browser.execute_script("return [innerWidth, innerHeight]")
    assert image is not None and [image.shape[1], image.shape[0]] == viewport
    assert viewport[0] == WINDOW[0] and viewport[1] > WINDOW[1] // 2
    assert image.std() > 25  # not blank: text, thumbnails, the playing clip
    assert errors(browser) == []


# -- pagination and previews on synthetic tables ---------------------------------------------


def write_tables(root: Path, n: int) -> list[str]:
    """An output with only its Parquet tables: n clips of 25 videos (no shards)."""
    rng = np.random.default_rng(0)
    clips = [
        ClipRow(
            key=f"{v:016x}_{i * 64:07d}", shard="", video_id=f"{v:016x}", source=f"/v/{v}.mp4",
            clip_index=i, start_frame=64 * i, end_frame=64 * i + 63, n_frames=64, fps=25.0,
            width=640, height=360, map_width=160, map_height=90, n_tracks=3,
            bg_flow_mean=float(rng.lognormal()), bg_flow_p95=2.0, occlusion_rate_mean=None,
            occlusion_rate_max=None, characters_max=int(rng.integers(0, 4)),
            characters_mode=1, multi_character_frac=0.5, pose_score_mean=0.6,
        )
        for v, i in ((j % 25, j // 25) for j in range(n))
    ]  # fmt: skip
    videos = [VideoRow(video_id=f"{v:016x}", source=f"/v/{v}.mp4", status="ok") for v in range(25)]
    for sub, rows, schema in (("clips", clips, CLIP_SCHEMA), ("videos", videos, VIDEO_SCHEMA)):
        (root / "stats" / sub).mkdir(parents=True)
        pq.write_table(rows_to_table(rows, schema), root / "stats" / sub / "shard-000000.parquet")
    return [c.key for c in clips]


def test_pages_hold_every_clip_once(browser: Any, tmp_path: Path) -> None:
    keys = write_tables(tmp_path / "out", 120)
    build_site(tmp_path / "out", tmp_path / "site")
    open_page(browser, tmp_path / "site")
    assert browser.find_element(By.ID, "page-info").text == "page 1 of 3"
    seen = row_keys(browser)
    while browser.find_element(By.ID, "next-page").is_enabled():
        browser.find_element(By.ID, "next-page").click()
        wait(browser, first_row_is_not(seen[-50]))
        seen += row_keys(browser)
    assert seen == keys and len(seen) == 120
    assert browser.find_element(By.ID, "page-info").text == "page 3 of 3"
    no_preview = browser.find_elements(By.CSS_SELECTOR, "td.nopreview")
    assert len(no_preview) == 20 and "python -m shards show" in no_preview[0].get_attribute("title")
    assert errors(browser) == []


def test_numbers_sort_as_numbers(browser: Any, tmp_path: Path) -> None:
    """start_frame 0, 64, 128, 192, 256: as strings "64" would come first when descending."""
    write_tables(tmp_path / "out", 120)
    build_site(tmp_path / "out", tmp_path / "site")
    open_page(browser, tmp_path / "site")
    clips = read_clips(tmp_path / "out").to_pylist()
    button = browser.find_element(By.CSS_SELECTOR, "button.sort[data-col=start_frame]")
    button.click()  # ascending
    wait(browser, lambda d: row_keys(d) == sorted_keys(clips, "start_frame", reverse=False)[:50])
    button.click()  # descending
    descending = sorted_keys(clips, "start_frame", reverse=True)[:50]
    wait(browser, lambda d: row_keys(d) == descending)
    assert browser.find_element(By.CSS_SELECTOR, "#clips tbody tr").get_attribute("data-key") == (
        descending[0]
    ) and descending[0].endswith("_0000256")
    assert errors(browser) == []


def test_previews_are_capped_and_read_only_their_shards(
    output: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real = shards.reader.open_input

    def spy(path: str) -> Any:
        opened.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(shards.reader, "open_input", spy)
    build_site(output, tmp_path / "site", previews=2)
    clips = read_clips(output)
    first = clips["key"].to_pylist()[:2]
    assert opened == sorted(set(clips["shard"].to_pylist()[:2]))
    data = json.loads((tmp_path / "site" / "data.js").read_text().split("=", 1)[1].rstrip(";\n"))
    assert list(data["media"]) == first
    assert sorted(p.name for p in (tmp_path / "site" / "previews").iterdir()) == [f"{k}.jpg" for k in sorted(first)]  # fmt: skip
    assert [c["name"] for c in data["columns"]] == CLIP_SCHEMA.names
    assert data["rows"] == [list(r.values()) for r in clips.to_pylist()]  # full precision
    assert [p["video_id"] for p in data["problems"]] == [f"{999:016x}"]  # its failed video
