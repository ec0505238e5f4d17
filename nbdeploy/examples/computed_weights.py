"""Real architectures as ONNX whose weights are computed by constant subgraphs.

Exporters with folding off, weight generators and some quantizers write a Conv's weight
as nodes (``Range → Mul → Sin → Mul → Reshape`` here, ``ConstantOfShape``/``Expand`` of
small constants for BatchNormalization's statistics) instead of an initializer: the file
is a few kB, every weight is exact and deterministic, and BatchNormalization stays unfused.

The node pattern of each block is the architecture's (conv-BN-ReLU, bottlenecks with a
residual Add, dense blocks that Concat, inception branches, ShuffleNet's channel split and
shuffle); widths are divided by ``shrink`` and blocks can be fewer, so a benchmark stays
short. Input: ``x: float32[batch, 3, size, size]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class _Graph:
    """Nodes and small initializers, with fresh names and computed weights."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def op(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def const(self, value: object, dtype: type = np.float32) -> str:
        name = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def wave(self, count: int, scale: float) -> str:
        """``scale · sin(f·i + f)`` for ``i < count``: deterministic, varied, computed."""
        freq = 0.37 + 0.011 * self.count
        ramp = self.op("Range", [self.const(0.0), self.const(float(count)), self.const(1.0)])
        angle = self.op("Add", [self.op("Mul", [ramp, self.const(freq)]), self.const(freq)])
        return self.op("Mul", [self.op("Sin", [angle]), self.const(scale)])

    def weight(self, shape: Sequence[int]) -> str:
        """A computed weight of ``shape``, scaled by its fan-in."""
        fan_in = math.prod(shape[1:])
        flat = self.wave(math.prod(shape), 1.5 / math.sqrt(fan_in))
        return self.op("Reshape", [flat, self.const(list(shape), np.int64)])

    def filled(self, channels: int, value: float) -> str:
        """``value`` repeated ``channels`` times, from ``ConstantOfShape``."""
        fill = helper.make_tensor("value", TensorProto.FLOAT, [1], [value])
        return self.op("ConstantOfShape", [self.const([channels], np.int64)], value=fill)

    def batchnorm(self, x: str, channels: int) -> str:
        """BatchNormalization whose statistics are computed (as an unfolded export has them)."""
        gamma = self.op("Add", [self.filled(channels, 1.0), self.wave(channels, 0.1)])
        beta = self.wave(channels, 0.1)
        mean = self.wave(channels, 0.05)
        var = self.op(
            "Add", [self.filled(channels, 0.5), self.op("Abs", [self.wave(channels, 0.4)])]
        )
        return self.op("BatchNormalization", [x, gamma, beta, mean, var], epsilon=1e-5)

    def conv(
        self, x: str, cin: int, cout: int, k: int, *, stride: int = 1, groups: int = 1,
        relu: bool = True, bias: bool = False,
    ) -> str:  # fmt: skip
        """Conv (computed weight, optional computed bias) → BatchNormalization [→ Relu]."""
        inputs = [x, self.weight([cout, cin // groups, k, k])]
        if bias:
            inputs.append(self.wave(cout, 0.1))
        pad = k // 2
        y = self.op("Conv", inputs, kernel_shape=[k, k], strides=[stride, stride],
                    pads=[pad] * 4, group=groups)  # fmt: skip
        y = self.batchnorm(y, cout)
        return self.op("Relu", [y]) if relu else y

    def pool(self, op_type: str, x: str, k: int, stride: int) -> str:
        pads = [(k - 1) // 2] * 4
        return self.op(op_type, [x], kernel_shape=[k, k], strides=[stride, stride], pads=pads)

    def head(self, x: str, channels: int, classes: int = 10) -> str:
        """Global average pool → Flatten → Gemm with a computed weight and bias."""
        flat = self.op("Flatten", [self.op("GlobalAveragePool", [x])])
        w, b = self.weight([classes, channels]), self.wave(classes, 0.1)
        return self.op("Gemm", [flat, w, b], transB=1)

    def model(self, name: str, out: str, size: int) -> onnx.ModelProto:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, size, size])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", None])
        self.nodes.append(helper.make_node("Identity", [out], ["y"]))
        graph = helper.make_graph(self.nodes, name, [x], [y], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        return model


def _stem(g: _Graph, width: int) -> str:
    return g.pool("MaxPool", g.conv("x", 3, width, 7, stride=2), 3, 2)


def resnet50(
    *, shrink: int = 4, blocks: Sequence[int] = (3, 4, 6, 3), size: int = 64
) -> onnx.ModelProto:
    """ResNet-50: bottlenecks (1×1, 3×3, 1×1 ×4), a projection on each stage's first."""
    g = _Graph()
    cin = 64 // shrink
    x = _stem(g, cin)
    for stage, count in enumerate(blocks):
        mid = (64 << stage) // shrink
        for block in range(count):
            stride = 2 if block == 0 and stage > 0 else 1
            y = g.conv(x, cin, mid, 1)
            y = g.conv(y, mid, mid, 3, stride=stride)
            y = g.conv(y, mid, mid * 4, 1, relu=False)
            skip = g.conv(x, cin, mid * 4, 1, stride=stride, relu=False) if block == 0 else x
            x, cin = g.op("Relu", [g.op("Add", [y, skip])]), mid * 4
    return g.model("resnet50", g.head(x, cin), size)


def densenet121(
    *, shrink: int = 4, blocks: Sequence[int] = (6, 12, 24, 16), size: int = 64
) -> onnx.ModelProto:
    """DenseNet-121: BN-ReLU-Conv1×1-BN-ReLU-Conv3×3 layers concatenated, transitions halve."""
    g = _Graph()
    growth, channels = 32 // shrink, 64 // shrink
    x = _stem(g, channels)
    for index, count in enumerate(blocks):
        for _ in range(count):
            y = g.op("Relu", [g.batchnorm(x, channels)])
            y = g.conv(y, channels, 4 * growth, 1)
            y = g.conv(y, 4 * growth, growth, 3, relu=False, bias=False)
            x, channels = g.op("Concat", [x, y], axis=1), channels + growth
        if index < len(blocks) - 1:
            y = g.op("Relu", [g.batchnorm(x, channels)])
            y = g.op("Conv", [y, g.weight([channels // 2, channels, 1, 1])], kernel_shape=[1, 1])
            x, channels = g.pool("AveragePool", y, 2, 2), channels // 2
    x = g.op("Relu", [g.batchnorm(x, channels)])
    return g.model("densenet121", g.head(x, channels), size)


def _inception(g: _Graph, x: str, cin: int, widths: Sequence[int], double: bool) -> tuple[str, int]:
    """Four branches — 1×1; 1×1→3×3; 1×1→5×5 (v2: 1×1→3×3→3×3); pool→1×1 — concatenated."""
    a, b1, b2, c1, c2, p = widths
    one = g.conv(x, cin, a, 1)
    three = g.conv(g.conv(x, cin, b1, 1), b1, b2, 3)
    five = g.conv(x, cin, c1, 1)
    five = g.conv(g.conv(five, c1, c2, 3), c2, c2, 3) if double else g.conv(five, c1, c2, 5)
    pool = g.conv(g.pool("MaxPool" if not double else "AveragePool", x, 3, 1), cin, p, 1)
    return g.op("Concat", [one, three, five, pool], axis=1), a + b2 + c2 + p


_GOOGLENET = ((64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "pool",
              (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
              (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128), "pool",
              (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128))  # fmt: skip


def inception(*, version: int = 1, shrink: int = 4, size: int = 64) -> onnx.ModelProto:
    """GoogLeNet (v1, with BatchNormalization as torchvision has it) or BN-Inception (v2:
    the 5×5 branch as two 3×3, average pooling in the pool branch)."""
    g = _Graph()
    x = _stem(g, 64 // shrink)
    x = g.conv(x, 64 // shrink, 64 // shrink, 1)
    x = g.pool("MaxPool", g.conv(x, 64 // shrink, 192 // shrink, 3), 3, 2)
    cin = 192 // shrink
    for widths in _GOOGLENET:
        if isinstance(widths, str):
            x = g.pool("MaxPool", x, 3, 2)
            continue
        scaled = [max(1, w // shrink) for w in widths]
        x, cin = _inception(g, x, cin, scaled, double=version == 2)
    return g.model(f"inception-v{version}", g.head(x, cin), size)


def _shuffle(g: _Graph, x: str, channels: int, side: int) -> str:
    """Channel shuffle of two groups: Reshape → Transpose → Reshape."""
    y = g.op("Reshape", [x, g.const([0, 2, channels // 2, side, side], np.int64)])
    y = g.op("Transpose", [y], perm=[0, 2, 1, 3, 4])
    return g.op("Reshape", [y, g.const([0, channels, side, side], np.int64)])


def _shuffle_branch(g: _Graph, x: str, cin: int, cout: int, stride: int) -> str:
    y = g.conv(x, cin, cout, 1)
    y = g.conv(y, cout, cout, 3, stride=stride, groups=cout, relu=False)
    return g.conv(y, cout, cout, 1)


def shufflenet(
    *, shrink: int = 2, blocks: Sequence[int] = (4, 8, 4), size: int = 64
) -> onnx.ModelProto:
    """ShuffleNet v2 (1×): channel split, a 1×1-dw3×3-1×1 branch, Concat, shuffle; each
    stage's first block downsamples on both branches."""
    g = _Graph()
    cin, side = 24 // shrink, size // 4
    x = _stem(g, cin)
    for stage, count in enumerate(blocks):
        cout = (116 << stage) // shrink // 2 * 2
        half = cout // 2
        for block in range(count):
            if block == 0:
                left = g.conv(
                    g.conv(x, cin, cin, 3, stride=2, groups=cin, relu=False), cin, half, 1
                )
                side //= 2
                right = _shuffle_branch(g, x, cin, half, 2)
            else:
                split = g.name("split")
                parts = [f"{split}_a", f"{split}_b"]
                g.nodes.append(
                    helper.make_node("Split", [x, g.const([half, half], np.int64)], parts, axis=1)
                )
                left, right = parts[0], _shuffle_branch(g, parts[1], half, half, 1)
            x, cin = _shuffle(g, g.op("Concat", [left, right], axis=1), cout, side), cout
    x = g.conv(x, cin, 1024 // shrink, 1)
    return g.model("shufflenet-v2", g.head(x, 1024 // shrink), size)


MODELS: dict[str, Callable[[], onnx.ModelProto]] = {
    "resnet-50": resnet50,
    "densenet-121": densenet121,
    "inception-v1": lambda: inception(version=1),
    "inception-v2": lambda: inception(version=2),
    "shufflenet-v2": shufflenet,
}
"""Every architecture at benchmark size (widths ÷4, ÷2 for ShuffleNet; 64×64 input)."""
