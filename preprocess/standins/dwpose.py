"""DWPose's two ONNX files as stand-ins: YOLOX (``yolox_l.onnx``) and RTMPose/SimCC
(``dw-ll_ucoco_384.onnx``), with the public files' input/output names and shapes.

- :func:`write_yolox_onnx` / :func:`write_dwpose_onnx`: small random conv nets whose outputs
  depend on every input pixel and channel, so a wrong letterbox, crop, channel order or
  normalisation changes the boxes and keypoints (the parity tests run them through rtmlib and
  through ``preprocess.pose.dwpose``). The detector can carry planted boxes
  (:func:`planted_head`) that stay put up to ``gain`` (plumbing tests, the paper-preset run).
- :func:`write_yolox_probe_onnx` / :func:`write_pose_probe_onnx`: probes that read one input
  channel only, for known-answer tests (a frame of known colour -> a score by hand).

Graphs are built with ``onnx.helper`` (opset 17, IR 8: what onnxruntime >= 1.17 reads), random
weights from a seeded NumPy generator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

NUM_KEYPOINTS = 133
OPSET = 17


def _save_onnx(graph: Any, path: Path) -> Path:
    """Check ``graph`` as a model (opset 17, IR 8) and save it."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


class _Graph:
    """An ONNX graph being built: random-weight layers from ``rng``, each op one output."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def const(self, value: Any, dtype: type = np.float32) -> str:
        from onnx import numpy_helper

        name = f"c{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str = "", **attrs: Any) -> str:
        from onnx import helper

        out = out or f"t{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        kernel: tuple[int, ...],
        stride: int = 1,
        std: float = 1,
        bias: Any = 0.0,
        scale_shift: tuple[float, float] = (1.0, 0.0),
    ) -> str:
        """Random conv (outputs of std ``std`` for unit-variance inputs) + ``bias``, 'same'
        padding for odd kernels, none for even ones (a patchify when kernel = stride); it reads
        ``x * scale + shift`` (folded into its weights: no pass over the input)."""
        w = self.rng.normal(0, std / np.sqrt(cin * np.prod(kernel)), (cout, cin, *kernel))
        b = self.rng.normal(0, 0.1, cout) + bias + scale_shift[1] * w.reshape(cout, -1).sum(1)
        pads = [k // 2 if k % 2 else 0 for k in kernel] * 2
        strides = [stride] * len(kernel)
        weight, shifted = self.const(w * scale_shift[0]), self.const(b)
        return self.op("Conv", x, weight, shifted, strides=strides, pads=pads)

    def slice(self, x: str, start: int, end: int, axis: int) -> str:
        i64 = np.int64
        return self.op("Slice", x, self.const([start], i64), self.const([end], i64),
                       self.const([axis], i64))  # fmt: skip

    def save(self, path: Path, name: str, inputs: list[Any], outputs: list[Any]) -> Path:
        from onnx import helper

        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        return _save_onnx(graph, path)


def _tensor(name: str, shape: list[int | str]) -> Any:
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


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


YOLOX_BIAS = np.array([0, 0, np.log(6), np.log(10), -2.5, 0, -10, -3, *[-10] * 77], np.float64)
"""Biases of the random YOLOX head (dx, dy, log w, log h, objectness, 80 classes): boxes 6 x 10
strides; logits low enough that a few dozen anchors of a real frame pass 0.3 as persons, a few
as class 2, other classes never."""


def write_yolox_onnx(
    path: Path,
    head: np.ndarray | None = None,
    input_hw: tuple[int, int] = (640, 640),
    batch: int | str = "B",
    seed: int = 0,
    gain: float = 0.02,
) -> Path:
    """A detector with DWPose's yolox_l.onnx I/O (``images`` ``[B, 3, h, w]`` raw 0..255 ->
    ``output`` ``[B, A, 85]``): a random conv net whose raw head depends on every pixel and
    channel (a stride-8 patchify conv, then stride 2 convs to the 16 and 32 grids, plus the
    image mean feature on every anchor; box offsets raw, objectness and classes sigmoid, as
    YOLOX's export). With ``head`` (A, 85) planted (:func:`planted_head`), the output is
    ``head + gain * net``: the planted boxes move by ~``gain`` strides with the image."""
    g, width = _Graph(np.random.default_rng(seed)), 8
    patches = g.conv("images", 3, width, (8, 8), 8, scale_shift=(1 / 64, -2.0))  # 0..255 in
    f = g.op("Tanh", patches)  # (B, C, h/8, w/8)
    mean = g.op("ReduceMean", f, axes=[2, 3], keepdims=1)  # (B, C, 1, 1)
    glob = g.conv(mean, width, 85, (1, 1), std=0.5, bias=YOLOX_BIAS)  # on every anchor
    levels = []
    for stride in (8, 16, 32):
        if stride > 8:
            f = g.op("Tanh", g.conv(f, width, width, (2, 2), 2))
        level = g.op("Add", g.conv(f, width, 85, (1, 1), std=2), glob)  # (B, 85, gh, gw)
        levels.append(g.op("Reshape", level, g.const([0, 85, -1], np.int64)))
    raw = g.op("Transpose", g.op("Concat", *levels, axis=2), perm=[0, 2, 1])  # (B, A, 85)
    out = g.op("Concat", g.slice(raw, 0, 4, 2), g.op("Sigmoid", g.slice(raw, 4, 85, 2)), axis=2)
    if head is not None:
        assert head.shape == (yolox_anchors(input_hw), 85), head.shape
        out = g.op("Add", g.op("Mul", out, g.const(gain)), g.const(head[None]))
    g.op("Identity", out, out="output")
    anchors = yolox_anchors(input_hw)
    return g.save(
        path,
        "standin_yolox",
        [_tensor("images", [batch, 3, *input_hw])],
        [_tensor("output", [batch, anchors, 85])],
    )


def write_yolox_probe_onnx(
    path: Path,
    box: tuple[float, float, float, float],
    channel: int,
    input_hw: tuple[int, int] = (640, 640),
) -> Path:
    """A detector that reads input channel ``channel`` only: one planted person box ``box``
    (cx, cy, w, h in input pixels) whose score is the mean of that channel over the whole
    input / 255 (objectness; class score 1); every other anchor scores 0. A known answer: for
    a frame of one colour the score follows from the letterbox by hand."""
    g = _Graph(np.random.default_rng(0))
    head = planted_head(input_hw, [(*box, 1.0, 0)])
    probe = np.zeros_like(head)
    probe[head[:, 4] > 0, 4] = 1 / 255
    head[:, 4] = 0.0
    mean = g.op("ReduceMean", g.slice("images", channel, channel + 1, 1), axes=[1, 2, 3])
    mean = g.op("Reshape", mean, g.const([-1, 1, 1], np.int64))  # (B, 1, 1)
    out = g.op("Add", g.op("Mul", mean, g.const(probe[None])), g.const(head[None]))
    g.op("Identity", out, out="output")
    return g.save(
        path,
        "probe_yolox",
        [_tensor("images", ["B", 3, *input_hw])],
        [_tensor("output", ["B", len(head), 85])],
    )


def write_dwpose_onnx(
    path: Path, input_hw: tuple[int, int] = (384, 288), batch: int | str = "B", seed: int = 0
) -> Path:
    """A pose model with dw-ll_ucoco_384.onnx's I/O (``input`` ``[B, 3, h, w]`` normalised ->
    ``simcc_x`` ``[B, 133, 2w]``, ``simcc_y`` ``[B, 133, 2h]``): a random 2x2 stride-2 conv
    (every pixel once) and a 1x1 conv, with tanh; then for each keypoint a random mix of the
    features' column means (simcc_x; four bins per feature column = two per crop column, split
    ratio 2) or row means (simcc_y), plus the whole-crop mean feature. Every bin depends on its
    whole column (row) of the crop in all channels, so the keypoints move with any change of
    crop, channel order or normalisation; the compute stays small (benchmarks time the code
    around the model)."""
    g, width, k = _Graph(np.random.default_rng(seed)), 8, NUM_KEYPOINTS
    h, w = input_hw
    f = g.op("Tanh", g.conv("input", 3, width, (2, 2), 2))  # (B, C, h/2, w/2)
    f = g.op("Tanh", g.conv(f, width, width, (1, 1)))
    glob = g.op("ReduceMean", f, axes=[2], keepdims=0)  # (B, C, w/2)
    glob = g.op("ReduceMean", glob, axes=[2], keepdims=1)  # (B, C, 1)
    for name, axis in (("simcc_x", 2), ("simcc_y", 3)):
        profile = g.op("ReduceMean", f, axes=[axis], keepdims=0)  # (B, C, n/2)
        bins = g.op("Add", g.conv(profile, width, 4 * k, (1,)), g.conv(glob, width, 4 * k, (1,)))
        bins = g.op("Reshape", bins, g.const([0, k, 4, -1], np.int64))  # (B, K, 4, n/2)
        bins = g.op("Transpose", bins, perm=[0, 1, 3, 2])  # (B, K, n/2, 4)
        bins = g.op("Reshape", bins, g.const([0, k, -1], np.int64))  # (B, K, 2n)
        g.op("Add", bins, g.const(0.5), out=name)  # scores mostly above pose.min_score
    return g.save(
        path,
        "standin_dwpose",
        [_tensor("input", [batch, 3, h, w])],
        [_tensor("simcc_x", [batch, k, 2 * w]), _tensor("simcc_y", [batch, k, 2 * h])],
    )


def write_pose_probe_onnx(
    path: Path, channel: int, input_hw: tuple[int, int] = (384, 288), batch: int | str = "B"
) -> Path:
    """A pose model that reads input channel ``channel`` only: every keypoint on its brightest
    pixel (simcc_x = the column maxima, each bin twice: split ratio 2; likewise simcc_y), so
    the score is that pixel's normalised value. A known answer: a dot of known colour comes
    back at its frame coordinates with a score computable by hand."""
    g = _Graph(np.random.default_rng(0))
    h, w = input_hw
    plane = g.slice("input", channel, channel + 1, 1)  # (B, 1, h, w)
    for name, axis in (("simcc_x", 2), ("simcc_y", 3)):
        m = g.op("Unsqueeze", g.op("ReduceMax", plane, axes=[axis], keepdims=0),
                 g.const([3], np.int64))  # fmt: skip
        m = g.op("Reshape", g.op("Concat", m, m, axis=3), g.const([0, 1, -1], np.int64))
        g.op("Expand", m, g.const([1, NUM_KEYPOINTS, 1], np.int64), out=name)  # (B, K, 2n)
    return g.save(
        path,
        "probe_dwpose",
        [_tensor("input", [batch, 3, h, w])],
        [
            _tensor("simcc_x", [batch, NUM_KEYPOINTS, 2 * w]),
            _tensor("simcc_y", [batch, NUM_KEYPOINTS, 2 * h]),
        ],
    )
