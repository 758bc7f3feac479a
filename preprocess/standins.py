"""Stand-ins for the paper's extractors' weight files: tiny models with the public files'
structure, names and I/O, random or planted weights. They let the real loading and inference
code run without the real weights: in the tests, in ``benchmarks/extractors.py``, and for
plumbing runs (``python -m preprocess`` with ``pose.detector=...`` etc. pointed at them).
Their outputs mean nothing; never ship them as weights.

Each writer takes a path, writes the file (or folder) there and returns it:

- :func:`write_yolox_onnx`: DWPose's detector I/O (``images`` ``[B, 3, h, w]`` -> ``output``
  ``[B, A, 85]``, the raw YOLOX head); the head is a constant planted by the caller
  (:func:`planted_head`; plus 0 x the input, so the graph reads its input).
- :func:`write_dwpose_onnx`: DWPose's pose-model I/O (``input`` ``[B, 3, 384, 288]`` ->
  ``simcc_x`` ``[B, 133, 576]``, ``simcc_y`` ``[B, 133, 768]``). It finds the brightest pixel
  of input channel 0 (red after ImageNet normalisation): simcc_x is the column maxima, each
  repeated twice (split ratio 2), likewise simcc_y, for every keypoint.
- :func:`write_pwcnet_checkpoint`: an MMFlow checkpoint (``meta`` + ``state_dict``) of a random
  PWC-Net whose keys are MMFlow's (:func:`mmflow_pwcnet` lays the modules out as MMFlow's
  source does); full size by default, :data:`TINY_PWCNET` for a narrow one.
- :func:`write_depth_anything`: a random ``DepthAnythingForDepthEstimation`` folder (config,
  safetensors, image-processor config: 518, keep aspect, multiple of 14), ``size="tiny"`` (4
  layers of width 16) or ``"small"`` (Depth Anything V1 Small's sizes, for timing).

Needs the dev extra for the ONNX writers (``onnx``); ``onnx`` and ``transformers`` are imported
inside the functions that use them, so importing this module costs only torch (through
:class:`PWCNetConfig`). To add a stand-in: one ``write_*`` function taking ``path`` (+ knobs)
and returning it, with the real file's input/output names and shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from preprocess.flow.pwcnet.net import PWCNetConfig

if TYPE_CHECKING:
    import onnx
    from torch import nn

NUM_KEYPOINTS = 133
OPSET = 17


def _save_onnx(graph: onnx.GraphProto, path: Path) -> Path:
    """Check ``graph`` as a model (opset 17, IR 8: what onnxruntime >= 1.17 reads) and save it."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


# ---- DWPose: YOLOX detector and SimCC pose model ---------------------------------------------


def yolox_anchors(input_hw: tuple[int, int]) -> int:
    """Anchors of a YOLOX head at strides 8, 16, 32 over an ``input_hw`` input."""
    return sum((input_hw[0] // s) * (input_hw[1] // s) for s in (8, 16, 32))


def planted_head(
    input_hw: tuple[int, int], boxes: list[tuple[float, float, float, float, float, int]]
) -> np.ndarray:
    """A raw YOLOX head (A, 85) with the given boxes planted: (cx, cy, w, h, score, class) in
    input pixels, each at the stride-16 cell holding its centre; everything else scores 0."""
    head = np.zeros((yolox_anchors(input_hw), 85), np.float32)  # (A, 4 box + 1 obj + 80 cls)
    offset = (input_hw[0] // 8) * (input_hw[1] // 8)  # the stride-8 anchors come first
    gw = input_hw[1] // 16
    for cx, cy, w, h, score, cls in boxes:
        gx, gy = int(cx // 16), int(cy // 16)
        a = offset + gy * gw + gx
        head[a, :4] = [cx / 16 - gx, cy / 16 - gy, np.log(w / 16), np.log(h / 16)]
        head[a, 4] = np.sqrt(score)  # objectness x class score = score
        head[a, 5 + cls] = np.sqrt(score)
    return head


def write_yolox_onnx(
    path: Path, head: np.ndarray, input_hw: tuple[int, int] = (640, 640), batch: int | str = "B"
) -> Path:
    """A detector with DWPose's yolox_l.onnx I/O whose raw head output is ``head`` (A, 85)."""
    from onnx import TensorProto, helper, numpy_helper

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
        numpy_helper.from_array(head[None].astype(np.float32), "head"),  # (1, A, 85)
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_yolox",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, *input_hw])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, head.shape[0], 85])],
        inits,
    )
    return _save_onnx(graph, path)


def write_dwpose_onnx(
    path: Path, input_hw: tuple[int, int] = (384, 288), batch: int | str = "B"
) -> Path:
    """A pose model with dw-ll_ucoco_384.onnx's I/O that puts every keypoint on the brightest
    pixel of input channel 0 (its SimCC maxima, split ratio 2)."""
    from onnx import TensorProto, helper, numpy_helper

    h, w = input_hw
    nodes = [helper.make_node("Slice", ["input", "c0", "c1", "ax1"], ["red"])]  # (B, 1, h, w)
    inits = [
        numpy_helper.from_array(np.array([0], np.int64), "c0"),
        numpy_helper.from_array(np.array([1], np.int64), "c1"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array([0, 1, -1], np.int64), "flat"),
        numpy_helper.from_array(np.array([1, NUM_KEYPOINTS, 1], np.int64), "k"),
        numpy_helper.from_array(np.array([3], np.int64), "ax_last"),
    ]
    for name, reduce_axis in (("simcc_x", 2), ("simcc_y", 3)):
        nodes += [
            helper.make_node("ReduceMax", ["red"], [f"{name}_m"], axes=[reduce_axis], keepdims=0),
            helper.make_node("Unsqueeze", [f"{name}_m", "ax_last"], [f"{name}_u"]),
            helper.make_node("Concat", [f"{name}_u", f"{name}_u"], [f"{name}_2"], axis=3),
            helper.make_node("Reshape", [f"{name}_2", "flat"], [f"{name}_r"]),  # (B, 1, 2n)
            helper.make_node("Expand", [f"{name}_r", "k"], [name]),  # (B, 133, 2n)
        ]
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
    return _save_onnx(graph, path)


# ---- PWC-Net laid out as MMFlow's module tree ------------------------------------------------

TINY_PWCNET = PWCNetConfig(
    pyramid_channels=(4, 4, 6, 6, 8, 8),
    convs_per_level=2,
    dense_channels=(6, 6, 4),
    context_channels=(6, 6, 6, 4, 4, 4),
    max_displacement=2,
)
"""A narrow PWC-Net (a few thousand parameters) that loads like the public checkpoint."""


def mmflow_pwcnet(cfg: PWCNetConfig | None = None) -> nn.Module:
    """PWC-Net's parameters under MMFlow's module names (no forward: only the ``state_dict``).

    Laid out as MMFlow's source builds it: ``encoder.layers[i]`` (``BasicConvBlock``) ->
    ``.layers[j]`` (mmcv ``ConvModule``) -> ``.conv``; ``decoder.decoders[levelN]``
    (``PWCModule``: ``dense_net.layers[k].layers.conv``, ``predict_layer``, ``upflow_layer``,
    ``upfeat_layer`` except on level 2) and ``decoder.post_processor.layers`` (``ContextNet``).
    Full size uses the numbers written in MMFlow's ``configs/_base_/models/pwcnet.py``
    (in_channels level6=81, level5=213, level4=181, level3=149, level2=117; ContextNet 565),
    not derived from :class:`PWCNetConfig`, so a mistake there shows against this tree."""
    from torch import nn

    cfg = cfg or PWCNetConfig()
    dense_channels = cfg.dense_channels

    def conv_module(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Module:
        m = nn.Module()  # mmcv ConvModule without norm (its activation has no parameters)
        m.conv = nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation)
        return m

    def with_layers(*layers: nn.Module) -> nn.Module:
        m = nn.Module()
        m.layers = nn.Sequential(*layers)
        return m

    def pwc_module(cin: int, up_flow: bool) -> nn.Module:
        dense = []
        for f in dense_channels:
            layer = nn.Module()  # DenseLayer
            layer.layers = conv_module(cin, f)
            dense.append(layer)
            cin += f
        m = nn.Module()
        m.dense_net = with_layers(*dense)
        m.predict_layer = nn.Conv2d(cin, 2, 3, padding=1)
        if up_flow:
            m.upflow_layer = nn.ConvTranspose2d(2, 2, 4, 2, 1)
            m.upfeat_layer = nn.ConvTranspose2d(cin, 2, 4, 2, 1)
        return m

    if cfg == PWCNetConfig():
        in_channels = dict(level6=81, level5=213, level4=181, level3=149, level2=117)
        context_in = 565
    else:
        corr = (2 * cfg.max_displacement + 1) ** 2
        in_channels = {"level6": corr}
        for lv in (5, 4, 3, 2):
            in_channels[f"level{lv}"] = corr + cfg.pyramid_channels[lv - 1] + 4
        context_in = in_channels["level2"] + sum(cfg.dense_channels)

    n = cfg.convs_per_level
    ins = (3, *cfg.pyramid_channels[:-1])
    encoder = with_layers(
        *[
            with_layers(*[conv_module(i if j == 0 else o, o, 2 if j == 0 else 1) for j in range(n)])
            for i, o in zip(ins, cfg.pyramid_channels, strict=True)
        ]
    )
    levels = sorted(in_channels)  # MMFlow sorts: level2 .. level6; level2 is the end level
    decoder = nn.Module()
    decoder.decoders = nn.ModuleDict(
        {lv: pwc_module(in_channels[lv], lv != levels[0]) for lv in levels}
    )
    context: list[nn.Module] = []
    cin = context_in
    for f, d in zip(cfg.context_channels, cfg.context_dilations, strict=True):
        context.append(conv_module(cin, f, dilation=d))
        cin = f
    context.append(nn.Conv2d(cin, 2, 3, padding=1))
    decoder.post_processor = with_layers(*context)
    net = nn.Module()
    net.encoder = encoder
    net.decoder = decoder
    return net


def write_pwcnet_checkpoint(path: Path, cfg: PWCNetConfig | None = None, seed: int = 0) -> Path:
    """An MMFlow-style checkpoint (``meta`` + ``state_dict``) of a random PWC-Net (full size
    unless ``cfg``, e.g. :data:`TINY_PWCNET`)."""
    import torch

    torch.manual_seed(seed)
    state = mmflow_pwcnet(cfg).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": {"mmflow_version": "stand-in", "iter": 0}, "state_dict": state}, path)
    return path


# ---- Depth Anything ------------------------------------------------------------------------


@dataclass(frozen=True)
class DepthAnythingSize:
    """Widths of a Depth Anything model: Dinov2 backbone (patch 14, 518 px, MLP ratio 4),
    DPT neck and head."""

    hidden: int
    layers: int
    heads: int
    reassemble: int
    neck: tuple[int, int, int, int]
    fusion: int
    head: int


DEPTH_ANYTHING_SIZES = {
    "tiny": DepthAnythingSize(16, 4, 2, 16, (8, 8, 16, 16), 8, 8),
    # Depth Anything V1 Small: Dinov2-S/14 backbone, the hub config's sizes
    "small": DepthAnythingSize(384, 12, 6, 384, (48, 96, 192, 384), 64, 32),
}


def write_depth_anything(
    folder: Path, seed: int = 0, size: Literal["tiny", "small"] = "tiny"
) -> Path:
    """A random Depth Anything model folder (config, safetensors, processor config) of
    :data:`DEPTH_ANYTHING_SIZES` ``[size]``, read by ``from_pretrained`` like the hub's."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    sz = DEPTH_ANYTHING_SIZES[size]
    torch.manual_seed(seed)
    # the last 4 layers feed the neck (``out_features``: transformers' typed signature only
    # spells it ``_out_features``, so it goes through a plain dict)
    stages: dict[str, Any] = {
        "out_features": [f"stage{i}" for i in range(sz.layers - 3, sz.layers + 1)]
    }
    backbone = Dinov2Config(
        hidden_size=sz.hidden,
        num_hidden_layers=sz.layers,
        num_attention_heads=sz.heads,
        patch_size=14,
        image_size=518,
        reshape_hidden_states=False,
        **stages,
    )
    cfg = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=sz.reassemble,
        neck_hidden_sizes=list(sz.neck),
        fusion_hidden_size=sz.fusion,
        head_hidden_size=sz.head,
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
