"""Tiny stand-ins for the paper's extractors' public weight files, built locally.

Each has the structure and I/O of the real file so the real loading code runs on it:

- :func:`write_yolox_onnx`: DWPose's detector I/O (``[B, 3, h, w]`` -> ``[B, A, 85]`` raw YOLOX
  head); the head is a constant planted by the caller (plus 0 x the input, so the graph reads
  its input).
- :func:`write_dwpose_onnx`: DWPose's pose-model I/O (``[B, 3, 384, 288]`` -> ``simcc_x``
  ``[B, 133, 576]``, ``simcc_y`` ``[B, 133, 768]``). It finds the brightest pixel of input
  channel 0 (the red channel after ImageNet normalisation): simcc_x is the column maxima,
  each repeated twice (split ratio 2), likewise simcc_y, for every keypoint.
- :class:`MMFlowPWCNet`: a module tree laid out as MMFlow's PWC-Net (encoder / decoder /
  ``ConvModule`` ``.conv`` wrappers / ``post_processor``), derived from MMFlow's source, whose
  ``state_dict`` has the key names of MMFlow's checkpoints; :func:`write_pwcnet_checkpoint`.
- :func:`write_depth_anything`: a tiny random ``DepthAnythingForDepthEstimation`` folder with
  its image processor config (518, keep aspect, multiple of 14).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from preprocess.pwcnet.net import PWCNetConfig

NUM_KEYPOINTS = 133


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def yolox_anchors(input_hw: tuple[int, int]) -> int:
    return sum((input_hw[0] // s) * (input_hw[1] // s) for s in (8, 16, 32))


def write_yolox_onnx(
    path: Path, head: np.ndarray, input_hw: tuple[int, int] = (640, 640), batch: int | str = "B"
) -> Path:
    """A detector with DWPose's yolox_l.onnx I/O whose raw head output is ``head`` (A, 85)."""
    assert head.shape == (yolox_anchors(input_hw), 85), head.shape
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["mean", "shape3"], ["mean3"]),  # (B, 1, 1)
        helper.make_node("Mul", ["mean3", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "head"], ["output"]),  # (B, A, 85)
    ]
    inits = [
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape3"),
        numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
        numpy_helper.from_array(head[None].astype(np.float32), "head"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_yolox",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, *input_hw])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, head.shape[0], 85])],
        inits,
    )
    return _save(graph, path)


def planted_head(
    input_hw: tuple[int, int], boxes: list[tuple[float, float, float, float, float, int]]
) -> np.ndarray:
    """A raw YOLOX head with the given boxes planted: (cx, cy, w, h, score, class) in input
    pixels, each at the stride-16 cell holding its centre; everything else scores 0."""
    head = np.zeros((yolox_anchors(input_hw), 85), np.float32)
    head[:, 4] = 0.0  # objectness
    offset = (input_hw[0] // 8) * (input_hw[1] // 8)
    gw = input_hw[1] // 16
    for cx, cy, w, h, score, cls in boxes:
        gx, gy = int(cx // 16), int(cy // 16)
        a = offset + gy * gw + gx
        head[a, :4] = [cx / 16 - gx, cy / 16 - gy, np.log(w / 16), np.log(h / 16)]
        head[a, 4] = np.sqrt(score)
        head[a, 5 + cls] = np.sqrt(score)
    return head


def write_dwpose_onnx(
    path: Path, input_hw: tuple[int, int] = (384, 288), batch: int | str = "B"
) -> Path:
    """A pose model with dw-ll_ucoco_384.onnx's I/O that puts every keypoint on the brightest
    pixel of input channel 0 (its SimCC maxima, split ratio 2)."""
    h, w = input_hw
    nodes = [helper.make_node("Slice", ["input", "c0", "c1", "ax1"], ["red"])]  # (B, 1, h, w)
    inits = [
        numpy_helper.from_array(np.array([0], np.int64), "c0"),
        numpy_helper.from_array(np.array([1], np.int64), "c1"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array([0, 1, -1], np.int64), "flat"),
        numpy_helper.from_array(np.array([1, NUM_KEYPOINTS, 1], np.int64), "k"),
    ]
    for name, reduce_axis in (("simcc_x", 2), ("simcc_y", 3)):
        nodes += [
            helper.make_node("ReduceMax", ["red"], [f"{name}_m"], axes=[reduce_axis], keepdims=0),
            helper.make_node("Unsqueeze", [f"{name}_m", "ax_last"], [f"{name}_u"]),
            helper.make_node("Concat", [f"{name}_u", f"{name}_u"], [f"{name}_2"], axis=3),
            helper.make_node("Reshape", [f"{name}_2", "flat"], [f"{name}_r"]),  # (B, 1, 2n)
            helper.make_node("Expand", [f"{name}_r", "k"], [name]),  # (B, 133, 2n)
        ]
    inits.append(numpy_helper.from_array(np.array([3], np.int64), "ax_last"))
    graph = helper.make_graph(
        nodes,
        "tiny_dwpose",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, h, w])],
        [
            helper.make_tensor_value_info(
                "simcc_x", TensorProto.FLOAT, [batch, NUM_KEYPOINTS, 2 * w]
            ),
            helper.make_tensor_value_info(
                "simcc_y", TensorProto.FLOAT, [batch, NUM_KEYPOINTS, 2 * h]
            ),
        ],
        inits,
    )
    return _save(graph, path)


# ---- PWC-Net laid out as MMFlow's module tree ------------------------------------------------


class ConvModule(nn.Module):
    """mmcv ConvModule without norm: ``.conv`` (+ an activation without parameters)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation)


class BasicConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, num_convs: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *[
                ConvModule(cin if j == 0 else cout, cout, 2 if j == 0 else 1)
                for j in range(num_convs)
            ]
        )


class BasicEncoder(nn.Module):
    def __init__(self, channels: tuple[int, ...], num_convs: int) -> None:
        super().__init__()
        ins = (3, *channels[:-1])
        self.layers = nn.Sequential(
            *[BasicConvBlock(i, o, num_convs) for i, o in zip(ins, channels, strict=True)]
        )


class DenseLayer(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.layers = ConvModule(cin, cout)


class BasicDenseBlock(nn.Module):
    def __init__(self, cin: int, feat: tuple[int, ...]) -> None:
        super().__init__()
        layers = []
        for f in feat:
            layers.append(DenseLayer(cin, f))
            cin += f
        self.layers = nn.Sequential(*layers)


class PWCModule(nn.Module):
    def __init__(self, cin: int, up_flow: bool, feat: tuple[int, ...]) -> None:
        super().__init__()
        self.dense_net = BasicDenseBlock(cin, feat)
        last = cin + sum(feat)
        self.predict_layer = nn.Conv2d(last, 2, 3, padding=1)
        if up_flow:
            self.upflow_layer = nn.ConvTranspose2d(2, 2, 4, 2, 1)
            self.upfeat_layer = nn.ConvTranspose2d(last, 2, 4, 2, 1)


class ContextNet(nn.Module):
    def __init__(self, cin: int, feat: tuple[int, ...], dilations: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for f, d in zip(feat, dilations, strict=True):
            layers.append(ConvModule(cin, f, dilation=d))
            cin = f
        layers.append(nn.Conv2d(cin, 2, 3, padding=1))
        self.layers = nn.Sequential(*layers)


class PWCNetDecoder(nn.Module):
    def __init__(self, in_channels: dict[str, int], cfg: PWCNetConfig, context_in: int) -> None:
        super().__init__()
        levels = sorted(in_channels)  # MMFlow sorts: level2 .. level6; level2 is the end level
        self.decoders = nn.ModuleDict(
            {lv: PWCModule(in_channels[lv], lv != levels[0], cfg.dense_channels) for lv in levels}
        )
        self.post_processor = ContextNet(context_in, cfg.context_channels, cfg.context_dilations)


class MMFlowPWCNet(nn.Module):
    """PWC-Net's parameters under MMFlow's names (no forward: only the state_dict is used).

    Full size uses the numbers written in MMFlow's ``configs/_base_/models/pwcnet.py``
    (in_channels level6=81, level5=213, level4=181, level3=149, level2=117; ContextNet 565)."""

    def __init__(self, cfg: PWCNetConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or PWCNetConfig()
        if cfg == PWCNetConfig():
            in_channels = dict(level6=81, level5=213, level4=181, level3=149, level2=117)
            context_in = 565
        else:
            corr = (2 * cfg.max_displacement + 1) ** 2
            in_channels = {"level6": corr}
            for lv in (5, 4, 3, 2):
                in_channels[f"level{lv}"] = corr + cfg.pyramid_channels[lv - 1] + 4
            context_in = in_channels["level2"] + sum(cfg.dense_channels)
        self.encoder = BasicEncoder(cfg.pyramid_channels, cfg.convs_per_level)
        self.decoder = PWCNetDecoder(in_channels, cfg, context_in)


TINY_PWCNET = PWCNetConfig(
    pyramid_channels=(4, 4, 6, 6, 8, 8),
    convs_per_level=2,
    dense_channels=(6, 6, 4),
    context_channels=(6, 6, 6, 4, 4, 4),
    max_displacement=2,
)


def write_pwcnet_checkpoint(path: Path, cfg: PWCNetConfig | None = None, seed: int = 0) -> Path:
    """An MMFlow-style checkpoint (``meta`` + ``state_dict``) of a random PWC-Net."""
    torch.manual_seed(seed)
    state = MMFlowPWCNet(cfg).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": {"mmflow_version": "stand-in", "iter": 0}, "state_dict": state}, path)
    return path


# ---- Depth Anything ------------------------------------------------------------------------


def write_depth_anything(folder: Path, seed: int = 0) -> Path:
    """A tiny random Depth Anything model folder (config, safetensors, processor config)."""
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
    )
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    torch.manual_seed(seed)
    backbone = Dinov2Config(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        patch_size=14,
        image_size=518,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )
    cfg = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=16,
        neck_hidden_sizes=[8, 8, 16, 16],
        fusion_hidden_size=8,
        head_hidden_size=8,
    )
    model = DepthAnythingForDepthEstimation(cfg).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    DPTImageProcessorPil(
        do_resize=True,
        size={"height": 518, "width": 518},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        resample=3,
        do_rescale=True,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_pad=False,
    ).save_pretrained(folder)
    return folder
