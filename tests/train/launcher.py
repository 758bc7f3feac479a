"""Running the trainer for real in the training tests: the ``deepspeed`` launcher on the CPU
(gloo), its outputs read back (``metrics.jsonl``, model folders, DeepSpeed checkpoints).

Used by ``test_trainer.py`` (stages end to end) and ``test_resume.py`` (interrupted runs).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
DEEPSPEED = Path(sys.executable).parent / "deepspeed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(config: str, *overrides: str, ranks: int = 1, resume: bool = False) -> str:
    """Run ``deepspeed --num_gpus RANKS train/main.py`` on ``jobs/train/CONFIG`` and return its
    output (fails on rc != 0, with the output's tail)."""
    port = free_port()
    cmd = [str(DEEPSPEED), "--num_gpus", str(ranks), "--master_port", str(port)]
    cmd += ["train/main.py", "--config", f"jobs/train/{config}", *overrides]
    cmd += ["--resume"] if resume else []
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=500)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    # DeepSpeed's shared-memory all-reduce segments (one per rank) are gone with the run.
    left = sorted(Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{port}_*"))
    assert not left, f"left in /dev/shm: {[p.name for p in left]}"
    return output


def folder(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """A model folder's weights: part name -> state dict."""
    return {p.stem: load_file(str(p)) for p in sorted(path.glob("*.safetensors"))}


def metrics(out: Path) -> list[dict[str, float]]:
    """The step lines of ``output_dir/metrics.jsonl``, in order."""
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
