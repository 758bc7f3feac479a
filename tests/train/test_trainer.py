"""The trainer end to end through the real ``deepspeed`` launcher on the CPU (gloo, ZeRO-2).

Tiny random-weight model, 64x48 canvas, a few steps on tiny shards written with ``shards/``.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model.init import main as model_init
from tests.train.helpers import write_train_output
from train.main import main as train_main
from train.stages import part_of

REPO = Path(__file__).resolve().parents[2]
DEEPSPEED = Path(sys.executable).parent / "deepspeed"
PARTS = ("unet", "reference_unet", "guiders", "vae", "image_encoder")

pytestmark = pytest.mark.timeout(600)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(config: str, *overrides: str, resume: bool = False) -> str:
    """Run ``deepspeed --num_gpus 1 train/main.py`` and return its output (fails on rc != 0)."""
    cmd = [str(DEEPSPEED), "--num_gpus", "1", "--master_port", str(free_port())]
    cmd += ["train/main.py", "--config", f"jobs/train/{config}", *overrides]
    cmd += ["--resume"] if resume else []
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=500)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    return output


def folder(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.stem: load_file(str(p)) for p in sorted(path.glob("*.safetensors"))}


def metrics(out: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("trainer")
    write_train_output(base / "data", [[1, 2], [3, 1, 1], [2, 2]])
    assert model_init(["--preset", "tiny", "--out", str(base / "init")]) == 0
    return {"base": base, "data": base / "data", "init": base / "init"}


def common(setup: dict[str, Path], out: Path, init: Path) -> list[str]:
    return [
        f"output_dir={out}",
        f"data.root={setup['data']}",
        f"init_from={init}",
        "data.workers=2",
    ]


@pytest.fixture(scope="module")
def stage1(setup: dict[str, Path]) -> Path:
    out = setup["base"] / "stage1"
    launch(
        "tiny_stage1.yaml",
        *common(setup, out, setup["init"]),
        "train.max_steps=4",
        "checkpoint.every=2",
        "checkpoint.keep=3",
        "validation.every=4",
        "train.ema_decay=0.5",  # the export holds the EMA; resuming must restore it
    )
    return out


def test_stage1_trains_only_its_parts(stage1: Path, setup: dict[str, Path]) -> None:
    steps = metrics(stage1)
    assert [m["step"] for m in steps] == [1, 2, 3, 4]
    assert all(math.isfinite(m["loss"]) and m["loss"] > 0 for m in steps)
    before, after = folder(setup["init"]), folder(stage1 / "export")
    assert sorted(after) == sorted(before)
    from model.folder import load_model_folder

    dead = {
        n.removeprefix("reference_unet.")
        for n in load_model_folder(setup["init"]).unused_reference_parameters()
    }
    for part in PARTS:
        changed = {k for k in before[part] if not torch.equal(before[part][k], after[part][k])}
        if part in ("vae", "image_encoder"):
            assert not changed, f"frozen {part} changed: {sorted(changed)[:3]}"
            continue
        trainable = set(before[part]) - (dead if part == "reference_unet" else set())
        assert len(changed) > 0.5 * len(trainable), f"{part}: {len(changed)}/{len(trainable)}"
        if part == "reference_unet":
            assert changed.isdisjoint(dead)
    assert (stage1 / "checkpoints" / "step_00000002" / "rank_0.pt").is_file()
    assert (stage1 / "checkpoints" / "latest").read_text().strip() == "step_00000004"
    assert list((stage1 / "validation").glob("step_00000004_*.mp4"))
    assert list((stage1 / "tensorboard").glob("events.out.tfevents.*"))
    assert "init_from" in (stage1 / "config.yaml").read_text()


def test_resume_continues_with_the_same_state(stage1: Path, setup: dict[str, Path]) -> None:
    out = setup["base"] / "resumed"
    shutil.copytree(stage1 / "checkpoints", out / "checkpoints")
    shutil.rmtree(out / "checkpoints" / "step_00000004")
    (out / "checkpoints" / "latest").write_text("step_00000002")
    output = launch(
        "tiny_stage1.yaml",
        *common(setup, out, setup["init"]),
        "train.max_steps=4",
        "checkpoint.every=2",
        "validation.every=0",
        "train.ema_decay=0.5",
        resume=True,
    )
    assert "resumed from step_00000002 at step 2" in output
    original, resumed = metrics(stage1), metrics(out)
    assert [m["step"] for m in resumed] == [3, 4]
    for a, b in zip(original[2:], resumed, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-7)
    want, got = folder(stage1 / "export"), folder(out / "export")
    for part in want:
        for key in want[part]:
            torch.testing.assert_close(got[part][key], want[part][key], rtol=1e-5, atol=1e-6)


def test_stage2_from_the_stage1_export_trains_only_motion_modules(
    stage1: Path, setup: dict[str, Path]
) -> None:
    out = setup["base"] / "stage2"
    launch(
        "tiny_stage2.yaml",
        *common(setup, out, stage1 / "export"),
        "train.max_steps=2",
        "checkpoint.every=2",
        "validation.every=0",
        "train.gradient_checkpointing=true",
        "train.attention=math",
        "deepspeed=jobs/deepspeed/zero2_bf16.json",  # bf16 ZeRO-2: export via zero_to_fp32
    )
    assert all(math.isfinite(m["loss"]) for m in metrics(out))
    before, after = folder(stage1 / "export"), folder(out / "export")
    assert set(after) == {*before, "motion_modules"}
    for part in before:
        for key in before[part]:
            assert torch.equal(before[part][key], after[part][key]), f"{part}.{key} changed"
    motion = after["motion_modules"]
    proj_out = [k for k in motion if ".proj_out." in k]
    assert proj_out and all(part_of(f"unet.{k}") == "motion_modules" for k in motion)
    # Fresh motion modules start with zeroed output projections; training moved them.
    assert sum(bool(motion[k].abs().sum() > 0) for k in proj_out) > len(proj_out) // 2


def test_bad_config_is_a_clear_error(setup: dict[str, Path]) -> None:
    assert train_main(["--config", "jobs/train/tiny_stage1.yaml", "data.root="]) == 2
    assert train_main(["--config", "jobs/train/tiny_stage1.yaml", "train.nope=1"]) == 2
