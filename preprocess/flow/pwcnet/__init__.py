"""``flow.backend=pwcnet``: MMFlow's PWC-Net in PyTorch, loading MMFlow's published checkpoints.

This module is light (torch is imported when the backend is built); the network lives in
``preprocess.flow.pwcnet.net`` and the checkpoint key map in
``preprocess.flow.pwcnet.checkpoint``. It runs on ``flow.device`` through PyTorch.

The flow stage gives it the clip's stored frames; each pair (v_i, v_{i-1}) goes through
MMFlow's test pipeline (:func:`~preprocess.flow.pwcnet.net.estimate_flow`: resize to multiples of
64, PWC-Net, upsample x flow_div, resize back and rescale), ``flow.batch_size`` pairs per
forward pass, giving backward flow in stored pixels. The field is then averaged down
(area) to the map resolution; the values stay in stored pixels per frame (docs/design.md §3).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from preprocess.backends import require_model_file
from preprocess.config import FlowConfig
from preprocess.flow.base import FLOW_BACKENDS, FlowBackend

log = logging.getLogger(__name__)

CHECKPOINT = "pwcnet_ft_4x1_300k_sintel_final_384x768.pth"
PWCNET_HOWTO = (
    f"Use MMFlow's published PWC-Net checkpoint, e.g. {CHECKPOINT} from "
    f"https://download.openmmlab.com/mmflow/pwcnet/{CHECKPOINT}: run "
    "`python -m preprocess.weights fetch pwcnet` on a machine with network (it lands in "
    "$MCANIM_WEIGHTS/pwcnet/) and set flow.weights to its path."
)


@FLOW_BACKENDS.register("pwcnet")
class PWCNetFlow(FlowBackend):
    """PWC-Net (MMFlow's architecture and weights), batched over frame pairs."""

    name = "pwcnet"
    runtime = "torch"

    def __init__(self, cfg: FlowConfig) -> None:
        super().__init__(cfg)
        import torch

        from preprocess.flow.pwcnet.checkpoint import load_mmflow_pwcnet

        path = require_model_file(cfg.weights, "flow.weights", PWCNET_HOWTO)
        if cfg.batch_size < 1:
            raise ValueError(f"flow.batch_size must be >= 1, got {cfg.batch_size}")
        self.net: Any = load_mmflow_pwcnet(path).to(self.device)
        self._torch = torch
        log.info("PWC-Net %s on %s", path.name, self.device)

    def _flow(self, current: np.ndarray, previous: np.ndarray) -> Any:
        """(B, H, W, 3) uint8 RGB pairs -> (B, 2, H, W) torch flow current -> previous, px."""
        from preprocess.flow.pwcnet.net import estimate_flow

        torch = self._torch

        def bgr(frames: np.ndarray) -> Any:  # (B, H, W, 3) RGB -> (B, 3, H, W) float BGR
            t = torch.from_numpy(np.ascontiguousarray(frames[..., ::-1]))
            return t.to(self.device).permute(0, 3, 1, 2).float()

        with torch.inference_mode():
            return estimate_flow(self.net, bgr(current), bgr(previous))

    def pair_flow(self, current: np.ndarray, previous: np.ndarray) -> np.ndarray:
        flow = self._flow(current[None], previous[None])[0]  # (2, H, W)
        return flow.permute(1, 2, 0).cpu().numpy().astype(np.float32)

    def clip_flow(self, frames: np.ndarray, map_size: tuple[int, int]) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, h, w, 2) float32 backward flow, stored px per frame."""
        import torch.nn.functional as F

        t = len(frames)
        flow = np.zeros((t, *map_size, 2), np.float32)  # (T, h, w, 2); F_0 = 0
        step = self.cfg.batch_size
        for start in range(1, t, step):
            idx = np.arange(start, min(start + step, t))
            full = self._flow(frames[idx], frames[idx - 1])  # (B, 2, H, W) stored px
            small = F.interpolate(full, size=map_size, mode="area")  # (B, 2, h, w)
            flow[idx] = small.permute(0, 2, 3, 1).cpu().numpy()
        return flow
