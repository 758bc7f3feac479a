"""Resuming an interrupted training run equals the uninterrupted run (docs/train.md, "Resuming").

The hard case, through the real ``deepspeed`` launcher: 2 ranks (gloo), bf16 with ZeRO-2
(``jobs/deepspeed/zero2_bf16.json``: the fp32 master weights and Adam moments live in each
rank's ZeRO partition), a linear learning-rate warm-up still running at the interruption
(a schedule that is not restored shows in the lr column), 2 micro-batches per optimizer step,
an EMA, and checkpoint pruning. The uninterrupted run trains 4 steps with a checkpoint after
each; the interrupted run is its checkpoint of step 2 (what a run killed during step 3 leaves:
a checkpoint is complete once ``latest`` names it) resumed to step 4 in another folder.

Compared: the step lines (loss and lr: same values; lr by hand), the fp32 master weights of the
last checkpoint and the exported EMA weights; and that only the ``checkpoint.keep`` newest
checkpoints remain, in both runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from model.init import main as model_init
from tests.train.helpers import write_train_output
from tests.train.launcher import folder, launch, metrics
from train.checkpoints import checkpoint_dir, latest_tag, tag_of, zero_fp32_weights

pytestmark = pytest.mark.timeout(900)

LR, WARMUP, STEPS, RESUME_AT = 1e-3, 4, 4, 2
LOSS_RTOL = 2**-8
"""Losses: bf16's unit roundoff (half the spacing 2^-7 between bf16 numbers in [1, 2)). A
restored run does the same bf16 operations on the same bits (the 2-rank gloo all-reduce sums
in a fixed order), so its losses are expected equal (measured here: equal to the last bit);
the slack only absorbs a rounding flip in one bf16 activation, should a kernel's reduction
order ever differ between the runs. A wrong resume (other noise, data or weights) moves the
loss by far more."""
UPDATE_RTOL = 0.01
"""Weights: the change since the resume point (the updates of steps 3-4), compared with the
uninterrupted run's change, to 1 % of its largest entry per tensor (measured here: equal to
the last bit). Not a bf16 tolerance on the weights themselves: at |w| ~ 0.1 bf16's spacing
(~5e-4) is of the order of one Adam update (~lr = 1e-3), so it could hide a resume that is
wrong for a step."""


def overrides(setup: dict[str, Path], out: Path, keep: int) -> list[str]:
    return [
        f"output_dir={out}",
        f"data.root={setup['data']}",
        f"init_from={setup['init']}",
        "data.workers=2",
        "deepspeed=jobs/deepspeed/zero2_bf16.json",
        "train.batch_size=1",
        "train.grad_accum=2",
        f"train.lr={LR}",
        f"train.warmup_steps={WARMUP}",
        f"train.max_steps={STEPS}",
        "train.ema_decay=0.5",
        "checkpoint.every=1",
        f"checkpoint.keep={keep}",
        "validation.every=0",
        "log.every=1",
        "log.tensorboard=false",
    ]


def checkpoints(out: Path) -> list[str]:
    return sorted(p.name for p in checkpoint_dir(out).glob("step_*") if p.is_dir())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("resume")
    write_train_output(base / "data", [[1, 2], [3, 1, 1], [2, 2]])
    assert model_init(["--preset", "tiny", "--out", str(base / "init")]) == 0
    setup = {"data": base / "data", "init": base / "init"}
    clean = base / "clean"
    launch("tiny_stage1.yaml", *overrides(setup, clean, keep=3), ranks=2)
    # The interrupted run: the clean run's checkpoint of step 2, resumed in its own folder.
    resumed = base / "resumed"
    tag = tag_of(RESUME_AT)
    shutil.copytree(checkpoint_dir(clean) / tag, checkpoint_dir(resumed) / tag)
    (checkpoint_dir(resumed) / "latest").write_text(tag)
    output = launch("tiny_stage1.yaml", *overrides(setup, resumed, keep=2), ranks=2, resume=True)
    assert f"resumed from {tag} at step {RESUME_AT}" in output, output[-3000:]
    return {"clean": clean, "resumed": resumed, "init": base / "init"}


def test_two_ranks_in_bf16_zero2_wrote_the_checkpoints(runs: dict[str, Path]) -> None:
    step = checkpoint_dir(runs["clean"]) / tag_of(STEPS)
    for rank in (0, 1):
        assert (step / f"rank_{rank}.pt").is_file()
        assert (step / f"bf16_zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").is_file() or (
            step / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt"
        ).is_file(), sorted(p.name for p in step.iterdir())


def test_only_the_newest_checkpoints_are_kept(runs: dict[str, Path]) -> None:
    assert checkpoints(runs["clean"]) == [tag_of(s) for s in (2, 3, 4)]  # keep=3 of 4
    assert checkpoints(runs["resumed"]) == [tag_of(s) for s in (3, 4)]  # keep=2: step 2 gone
    for run in ("clean", "resumed"):
        assert latest_tag(runs[run]) == tag_of(STEPS)


def test_the_lr_schedule_continues_where_it_stopped(runs: dict[str, Path]) -> None:
    clean, resumed = metrics(runs["clean"]), metrics(runs["resumed"])
    assert [m["step"] for m in clean] == [1, 2, 3, 4]
    assert [m["step"] for m in resumed] == [3, 4]
    # By hand: the lr after optimizer step s is LR * min(1, (s + 1) / WARMUP) (one scheduler
    # step per optimizer step, not per micro-batch).
    assert [m["lr"] for m in clean] == pytest.approx(
        [LR * min(1, (s + 1) / WARMUP) for s in (1, 2, 3, 4)]
    )
    assert [m["lr"] for m in resumed] == [m["lr"] for m in clean[RESUME_AT:]]


def test_losses_continue_as_in_the_uninterrupted_run(runs: dict[str, Path]) -> None:
    clean, resumed = metrics(runs["clean"]), metrics(runs["resumed"])
    for a, b in zip(clean[RESUME_AT:], resumed, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=LOSS_RTOL), (a, b)


def test_final_weights_equal_the_uninterrupted_run(runs: dict[str, Path]) -> None:
    start, clean, resumed = (
        {k: v.detach() for k, v in zero_fp32_weights(runs[run], step).items()}
        for run, step in (("clean", RESUME_AT), ("clean", STEPS), ("resumed", STEPS))
    )
    assert clean.keys() == resumed.keys() == start.keys() and clean
    moved = 0
    for name, want in clean.items():
        update, got = want - start[name], resumed[name] - start[name]
        scale = float(update.abs().max())
        moved += scale > 0
        torch.testing.assert_close(got, update, rtol=0, atol=UPDATE_RTOL * scale, msg=name)
    assert moved > len(clean) // 2  # the comparison is about weights that trained
    # The export holds the EMA (restored from the checkpoint's client state).
    want_ema, got_ema = folder(runs["clean"] / "export"), folder(runs["resumed"] / "export")
    for part, tensors in want_ema.items():
        for key, value in tensors.items():
            torch.testing.assert_close(got_ema[part][key], value, rtol=1e-5, atol=1e-6)
