"""Inference section of ``benchmarks/gpu_check.py``: one CFG denoising step and a DDIM-50 projection.

The full-size stage-2 model (SD 1.5 UNets + AnimateDiff v2 motion modules, random weights) in
bf16 on the device, driven through ``model.pipeline``'s own steps: ``guide_frames`` (the four
guiders -> ``c_multi``), ``encode_reference`` (ReferenceNet tokens, once per video),
``guided_prediction`` (one classifier-free-guidance step = two UNet evaluations of a 16-frame
window at 896 x 640) and ``decode_frames`` (VAE). The projection of ``python -m model.animate``
on a 64-frame video, DDIM 50, 16-frame windows with stride 8 (``window_spans``: 7 windows):
50 x windows x step + guiders over 64 frames + reference + VAE decode of 64 frames (the
decode of one window's frames timed and scaled). Peak memory of the step and of the decode.
"""

from __future__ import annotations

import logging
import time

from gpu_common import Busy, Clock, Row, Section, Sizes, peak_gib, reset_peak, timed

log = logging.getLogger("gpu_check.infer")


def cfg_step(sec: Section, sizes: Sizes, clock: Clock) -> None:
    import torch

    from model.composed import AnimationModel
    from model.config import preset_config
    from model.guiders import Conditions
    from model.pipeline import (
        decode_frames,
        encode_reference,
        guide_frames,
        guided_prediction,
        window_spans,
    )

    dev = sizes.device
    dtype = torch.bfloat16 if dev.startswith("cuda") else torch.float32
    t0 = time.perf_counter()
    with torch.device(dev):
        model = AnimationModel.from_config(preset_config(sizes.model, motion=True))
    model = model.to(dtype).eval().requires_grad_(False)
    sec.notes.append(f"model built in {time.perf_counter() - t0:.1f} s, {dtype}")
    f, h, w = sizes.infer_frames, sizes.height, sizes.width
    lat_h, lat_w = h // 8, w // 8

    def conditions(start: int, stop: int) -> Conditions:  # (1, n, C, H, W) random inputs
        n = stop - start
        return Conditions(
            pose=torch.rand(1, n, 3, h, w, device=dev),
            flow=torch.rand(1, n, 2, h, w, device=dev),
            order=torch.rand(1, n, 1, h, w, device=dev),
            reference_pose=torch.rand(1, 1, 3, h, w, device=dev),
        )

    with torch.no_grad():
        c_multi = guide_frames(model, conditions, f, sizes.window)  # (1, F, C0, h, w)
        latents = torch.randn(1, 4, lat_h, lat_w, device=dev)  # reference latents
        clip = torch.randn(1, model.cfg.image_encoder.projection_dim, device=dev)
        reference = encode_reference(model, latents, clip)
    noisy = torch.randn(1, f, 4, lat_h, lat_w, device=dev)  # (1, F, 4, h, w) float32
    t = torch.tensor(500, device=dev)

    def step() -> None:
        guided_prediction(model, noisy, t, c_multi, reference, sizes.guidance)

    reset_peak(dev)
    with Busy(dev) as busy:
        step_s = timed(step, dev, repeats=3)
    what = f"{f} frames x {h}x{w}"
    sec.add(
        Row(
            f"CFG denoising step ({what})",
            step_s,
            "s",
            1,
            dev,
            busy.value,
            peak_gib(dev),
            f"2 UNet evaluations, guidance {sizes.guidance}, {dtype}",
        )
    )
    if not clock.fits(10 * step_s + 5):
        sec.skip_item("DDIM projection", "section time limit")
        return
    n = sizes.video_frames
    spans = window_spans(n, sizes.window, sizes.stride)
    guide_s = timed(lambda: guide_frames(model, conditions, n, sizes.window), dev, repeats=1)
    ref_s = timed(lambda: encode_reference(model, latents, clip), dev, repeats=1)
    window = torch.randn(1, sizes.window, 4, lat_h, lat_w, device=dev)
    reset_peak(dev)
    decode_s = timed(lambda: decode_frames(model, window), dev, repeats=1) * n / sizes.window
    decode_peak = peak_gib(dev)
    total = sizes.ddim_steps * len(spans) * step_s + guide_s + ref_s + decode_s
    parts = (
        f"{sizes.ddim_steps} x {len(spans)} windows x {step_s:.3f} s + guiders {guide_s:.2f} s"
        f" + reference {ref_s:.2f} s + VAE decode {decode_s:.2f} s"
    )
    sec.add(
        Row(
            f"projected DDIM {sizes.ddim_steps}, {n} frames, windows {sizes.window}/{sizes.stride}",
            total,
            "s",
            1,
            dev,
            None,
            decode_peak,
            parts + " (peak: the decode)",
        )
    )
    log.info("inference projected at %.1f s", total)
