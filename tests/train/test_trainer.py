"""The trainer end to end through the real ``deepspeed`` launcher on the CPU (gloo, ZeRO-2).

Tiny random-weight model, 64x48 canvas, a few steps on tiny shards written with ``shards/``.
Resuming an interrupted run (2 ranks, bf16 ZeRO-2, warm-up, accumulation, pruning) is
``test_resume.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from model.init import main as model_init
from tests.train.helpers import write_train_output
from tests.train.launcher import folder, launch, metrics
from train.main import main as train_main
from train.stages import part_of

PARTS = ("unet", "reference_unet", "guiders", "vae", "image_encoder")

pytestmark = pytest.mark.timeout(600)


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
        "train.ema_decay=0.5",  # the export holds the EMA
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
