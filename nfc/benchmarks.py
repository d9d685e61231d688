"""Benchmark convolutional networks, defined with PyTorch and exported to ONNX.

The registry :data:`MODELS` lists every benchmark the compiler is measured on: the three networks of
the NeuFlow papers (face detector, test network, scene parser), a small classifier trained on the
scikit-learn digits so that accuracy can be checked end to end, and a handful of classic ImageNet
architectures (LeNet-5, ResNet-18, MobileNetV2, narrowed AlexNet and VGG-16) with random weights.

:func:`build_models` writes one ``<name>.onnx`` per registry entry.  Everything is deterministic:
each builder seeds torch itself (the digits classifier trains on one thread), so running it twice on
a machine gives byte-identical files, from both exporters.  Build time for everything is about 25 s
on two cores, most of it in the dynamo exporter and the digits training.

Export conventions, relied on by the ONNX importer and its tests:

* batch 1, NCHW, static shapes; one graph input ``input`` and one graph output ``output`` (the
  pyramid network has three, ``ModelSpec.outputs``);
* most files come from the TorchScript exporter (``dynamo=False``) at a fixed opset that varies
  between models (11, 13, 17) so several opsets are covered; ``lenet5_dynamo`` and
  ``mobilenet_v2_dynamo`` come from the default (dynamo) exporter at opset 18, weights embedded;
* TorchScript exports keep ``BatchNormalization`` nodes (the exporter's own Conv+BN fusion is
  turned off), and batch-norm layers carry non-trivial statistics, so the importer's folding of
  batch norm is really exercised;
* connection tables (fan-in smaller than the number of input maps) are full convolutions whose
  weights are zero outside the table;
* ``digits`` also gets ``digits_test.npz`` (``X_test`` float32 Nx1x8x8 in [0, 1], ``y_test``
  int64) next to its ONNX file.

torch is a development-only dependency: it is imported inside the functions, so importing this
module works without it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nfc.files import atomic_write_with

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

__all__ = [
    "MODELS",
    "ModelSpec",
    "build_model",
    "build_models",
    "connection_table",
    "export_onnx",
]

Exporter = Literal["torchscript", "dynamo"]


@dataclass(frozen=True)
class ModelSpec:
    """One benchmark network of the registry.

    Attributes:
        name: registry key, also the ONNX file's stem.
        description: one line saying what the network is.
        input_shape: shape of the single input, batch (1) included.
        opset: ONNX opset the file is exported at.
        builder: name of the function in this module that returns the ``torch.nn.Module``.
        exporter: ``"torchscript"`` (``torch.onnx.export(dynamo=False)``) or ``"dynamo"`` (default
            exporter, needs onnxscript).
        extras: optional name of a function in this module returning side files to write next to
            the ONNX file, as ``{file name: {array name: array}}`` (saved with ``numpy.savez``).
        outputs: the graph outputs' names, in the module's output order.
    """

    name: str
    description: str
    input_shape: tuple[int, ...]
    opset: int
    builder: str
    exporter: Exporter = "torchscript"
    extras: str | None = None
    outputs: tuple[str, ...] = ("output",)

    @property
    def filename(self) -> str:
        """The ONNX file's name, ``<name>.onnx``."""
        return f"{self.name}.onnx"


_IMAGENET = (1, 3, 224, 224)
_VGA_QUARTER = (1, 3, 240, 320)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("lenet5", "LeNet-5 (tanh, average pooling), 10 classes", (1, 1, 32, 32), 11, "lenet5"),
        ModelSpec(
            "lenet5_dynamo",
            "lenet5 from the default (dynamo) exporter",
            (1, 1, 32, 32),
            18,
            "lenet5",
            "dynamo",
        ),
        ModelSpec(
            "face_detector",
            "NeuFlow face detector: conv5x5, avgpool4, conv7x7 fan-in 4, 1x1 conv to 2 maps",
            (1, 1, 144, 192),
            13,
            "face_detector",
        ),
        ModelSpec(
            "neuflow_test",
            "NeuFlow test network: conv7x7 fan-in 1, avgpool2, conv7x7 fan-in 4, avgpool2",
            _VGA_QUARTER,
            11,
            "neuflow_test",
        ),
        ModelSpec(
            "scene_parsing",
            "Farabet et al. scene-parsing feature extractor, 3 stages, 1.835 GMAC useful",
            _VGA_QUARTER,
            17,
            "scene_parsing",
        ),
        ModelSpec(
            "scene_parsing_pyramid",
            "scene_parsing on a 3-scale pyramid (320x240, 160x120, 80x60) in one graph, shared weights",
            _VGA_QUARTER,
            17,
            "scene_parsing_pyramid",
            outputs=("output", "output_2", "output_4"),
        ),
        ModelSpec(
            "digits",
            "small CNN trained on the scikit-learn digits (8x8), softmax output",
            (1, 1, 8, 8),
            13,
            "digits",
            extras="digits_extras",
        ),
        ModelSpec("resnet18", "ResNet-18 (BasicBlock, batch norm), 1000 classes", _IMAGENET, 17, "resnet18"),
        ModelSpec(
            "mobilenet_v2",
            "MobileNetV2 width 1.0 (ReLU6, depthwise), 1000 classes",
            _IMAGENET,
            13,
            "mobilenet_v2",
        ),
        ModelSpec(
            "mobilenet_v2_dynamo",
            "mobilenet_v2 from the default (dynamo) exporter",
            _IMAGENET,
            18,
            "mobilenet_v2",
            "dynamo",
        ),
        ModelSpec(
            "alexnet_small",
            "AlexNet (LRN, overlapping max pool, dropout), channels / 4, fc 1024-1024-1000",
            _IMAGENET,
            11,
            "alexnet_small",
        ),
        ModelSpec("vgg16_small", "VGG-16, channels / 8, fc 512-512-1000", _IMAGENET, 17, "vgg16_small"),
    )
}
"""All benchmark networks, by name."""


# ----------------------------------------------------------------------------------------------
# Helpers shared by the builders
# ----------------------------------------------------------------------------------------------


def connection_table(n_in: int, n_out: int, fan_in: int) -> list[tuple[int, ...]]:
    """A fixed connection table: the input maps each output map sees.

    Output map ``j`` sees the ``fan_in`` consecutive input maps starting at ``j % n_in`` (wrapping
    around), so every input map feeds the same number of outputs when ``n_out`` is a multiple of
    ``n_in``.
    """
    if not 1 <= fan_in <= n_in:
        raise ValueError(f"fan-in {fan_in} must be between 1 and the number of inputs {n_in}")
    return [tuple(sorted((j + i) % n_in for i in range(fan_in))) for j in range(n_out)]


def _table_conv(n_in: int, n_out: int, k: int, table: Sequence[Sequence[int]]) -> nn.Conv2d:
    """A valid ``k`` x ``k`` convolution whose weights are zero outside ``table``.

    Kept weights are drawn with LeCun scaling for the real fan-in (``len(table[j]) * k * k``) so a
    following tanh is not saturated.
    """
    import torch
    from torch import nn

    conv = nn.Conv2d(n_in, n_out, k)
    mask = torch.zeros(n_out, n_in, 1, 1)
    for j, inputs in enumerate(table):
        mask[j, list(inputs)] = 1.0
    with torch.no_grad():
        for j, inputs in enumerate(table):
            std = 1.0 / math.sqrt(len(inputs) * k * k)
            conv.weight[j].normal_(0.0, std)
        conv.weight.mul_(mask)
        conv.bias.uniform_(-0.1, 0.1)
    return conv


def _lecun_init(module: nn.Module) -> None:
    """LeCun-normal weights, small uniform biases, for every conv and linear layer (tanh nets)."""
    from torch import nn

    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            fan_in = m.weight[0].numel()
            nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(fan_in))
            if m.bias is not None:
                nn.init.uniform_(m.bias, -0.1, 0.1)


def _kaiming_init(module: nn.Module) -> None:
    """He-normal (fan-in) weights and small uniform biases for every conv and linear layer (ReLU nets).

    Biases are not zero: equal initializers would be merged by the TorchScript exporter (which then
    inserts ``Identity`` nodes), and a zero bias would hide bias-handling bugs.
    """
    from torch import nn

    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.uniform_(m.bias, -0.05, 0.05)


def _normalise_sequential(model: nn.Sequential, input_shape: Sequence[int], batch: int = 2) -> None:
    """Rescale each conv/linear layer so its output has unit standard deviation on random input.

    Run once after initialisation (in eval mode, layer by layer), this keeps deep ReLU/max-pool
    stacks from drifting: activations and outputs stay of order 1.
    """
    import torch
    from torch import nn

    with torch.no_grad():
        x = torch.randn(batch, *input_shape[1:])
        for layer in model:
            x = layer(x)
            if isinstance(layer, nn.Conv2d | nn.Linear):
                scale = float(x.std())
                layer.weight.div_(scale)
                if layer.bias is not None:
                    layer.bias.div_(scale)
                x = x / scale


def _randomise_batchnorm(model: nn.Module, input_shape: Sequence[int], batch: int = 4) -> None:
    """Give every batch norm non-trivial parameters and statistics that keep activations sane.

    ``weight`` and ``bias`` are drawn at random, then the running mean and variance are measured
    on a batch of random inputs (cumulative average over one training-mode forward pass), then
    perturbed a little, so they are neither 0/1 nor exactly the batch statistics.
    """
    import torch
    from torch import nn

    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 1.0)
            bn.bias.uniform_(-0.1, 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative moving average: one pass gives the batch statistics
        model.train()
        model(torch.randn(batch, *input_shape[1:]))
        model.eval()
        for bn in bns:
            bn.momentum = 0.1
            bn.running_mean.add_(0.05 * torch.randn_like(bn.running_mean))
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.9, 1.1))


def _lrn_module(size: int, alpha: float, beta: float, k: float) -> nn.Module:
    """Local response normalisation that exports as a single ONNX ``LRN`` node.

    ``torch.nn.LocalResponseNorm`` is written in terms of pad/avg-pool/pow in Python and would
    export as a chain of those; an autograd function with a ``symbolic`` method gives the
    TorchScript exporter the ONNX operator directly.  The semantics agree: both compute
    ``x / (k + alpha / size * sum of squares over size channels) ** beta``.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    class LRNFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            return F.local_response_norm(x, size, alpha=alpha, beta=beta, k=k)

        @staticmethod
        def symbolic(g: Any, x: Any) -> Any:
            return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)

    class LRN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return LRNFunction.apply(x)

        def extra_repr(self) -> str:
            return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"

    return LRN()


def _abs() -> nn.Module:
    """A module computing ``abs`` (the rectification of the NeuFlow-era networks)."""
    import torch
    from torch import nn

    class Abs(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.abs(x)

    return Abs()


# ----------------------------------------------------------------------------------------------
# The networks
# ----------------------------------------------------------------------------------------------


def lenet5() -> nn.Module:
    """LeNet-5: conv5x5 1->6, tanh, avgpool2, conv5x5 6->16, tanh, avgpool2, 400-120-84-10 (tanh)."""
    import torch
    from torch import nn

    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.Tanh(),
        nn.Linear(120, 84), nn.Tanh(),
        nn.Linear(84, 10),
    )  # fmt: skip
    _lecun_init(model)
    return model.eval()


def face_detector() -> nn.Module:
    """NeuFlow face detector on one 144x192 map.

    conv5x5 1->8, tanh, abs, avgpool 4x4/4, tanh, conv7x7 8->32 (fan-in 4), tanh, and the 32->2
    linear classifier applied at every location as a 1x1 convolution.  Output 1x2x29x41.
    """
    import torch
    from torch import nn

    torch.manual_seed(101)
    model = nn.Sequential(
        _table_conv(1, 8, 5, connection_table(1, 8, 1)), nn.Tanh(), _abs(),
        nn.AvgPool2d(4, 4), nn.Tanh(),
        _table_conv(8, 32, 7, connection_table(8, 32, 4)), nn.Tanh(),
        nn.Conv2d(32, 2, 1),
    )  # fmt: skip
    _lecun_init(model[-1])
    return model.eval()


def neuflow_test() -> nn.Module:
    """NeuFlow test network on 3x240x320.

    conv7x7 3->32 (fan-in 1), tanh, abs, avgpool2, conv7x7 32->32 (fan-in 4), tanh, abs, avgpool2.
    Output 1x32x55x75.
    """
    import torch
    from torch import nn

    torch.manual_seed(102)
    return nn.Sequential(
        _table_conv(3, 32, 7, connection_table(3, 32, 1)), nn.Tanh(), _abs(), nn.AvgPool2d(2, 2),
        _table_conv(32, 32, 7, connection_table(32, 32, 4)), nn.Tanh(), _abs(), nn.AvgPool2d(2, 2),
    ).eval()  # fmt: skip


def scene_parsing() -> nn.Module:
    """Scene-parsing feature extractor of Farabet et al. (PAMI 2013) on one 3x240x320 YUV frame.

    Stage 1: valid conv7x7 3->16, fan-in 1 (maps 0-7 see Y, 8-11 U, 12-15 V), tanh, maxpool2.
    Stage 2: valid conv7x7 16->64, fan-in 8, tanh, maxpool2.  Stage 3: valid conv7x7 64->256,
    fan-in 32.  Useful MACs (non-zero kernels only): 57.6 M + 420.5 M + 1357 M = 1.835 G.
    Output 1x256x49x69.
    """
    import torch
    from torch import nn

    torch.manual_seed(103)
    yuv_table = [(0,)] * 8 + [(1,)] * 4 + [(2,)] * 4
    return nn.Sequential(
        _table_conv(3, 16, 7, yuv_table), nn.Tanh(), nn.MaxPool2d(2, 2),
        _table_conv(16, 64, 7, connection_table(16, 64, 8)), nn.Tanh(), nn.MaxPool2d(2, 2),
        _table_conv(64, 256, 7, connection_table(64, 256, 32)),
    ).eval()  # fmt: skip


def scene_parsing_pyramid() -> nn.Module:
    """:func:`scene_parsing` applied to a 3-scale image pyramid, as one network.

    The 320x240 frame is halved twice by 2x2 average pooling (160x120, 80x60) and the same feature
    extractor (shared weights) runs on each scale. The original builds a Laplacian pyramid and
    normalises it locally; here the pyramid is the grid's own work. Outputs: 256x49x69, 256x19x29
    and 256x4x9 feature maps.
    """
    from torch import nn

    class Pyramid(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = scene_parsing()
            self.down = nn.AvgPool2d(2, 2)

        def forward(self, x):  # type: ignore[no-untyped-def]
            x2 = self.down(x)
            x4 = self.down(x2)
            return self.features(x), self.features(x2), self.features(x4)

    return Pyramid().eval()


def _digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The scikit-learn digits as ``(X_train, y_train, X_test, y_test)``: first 1437 train, rest test.

    Images are float32 Nx1x8x8 scaled to [0, 1]; labels int64.
    """
    import numpy as np
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = data.target.astype(np.int64)
    n_train = 1437
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads (makes training reproducible across machines)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def digits() -> nn.Module:
    """Digits classifier, trained here (deterministically, a few seconds on one CPU thread).

    conv3x3 1->16 pad 1, ReLU, maxpool2, conv3x3 16->32 pad 1, batch norm, ReLU, maxpool2,
    flatten, linear 128->10, softmax.  Test accuracy is about 97%.
    """
    import torch
    from torch import nn

    x_train, y_train, _, _ = _digits_split()
    torch.manual_seed(104)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(128, 10),
    )  # fmt: skip
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    batch = 64
    with _torch_threads(1), torch.enable_grad():
        model.train()
        for _epoch in range(15):
            order = torch.randperm(len(xt))
            for start in range(0, len(xt), batch):
                idx = order[start : start + batch]
                optimiser.zero_grad()
                loss = loss_fn(model(xt[idx]), yt[idx])
                loss.backward()
                optimiser.step()
    return nn.Sequential(model, nn.Softmax(dim=1)).eval()


def digits_extras() -> dict[str, dict[str, np.ndarray]]:
    """The digits test split, saved as ``digits_test.npz`` (``X_test``, ``y_test``)."""
    _, _, x_test, y_test = _digits_split()
    return {"digits_test.npz": {"X_test": x_test, "y_test": y_test}}


def _basic_block(c_in: int, c_out: int, stride: int) -> nn.Module:
    """ResNet BasicBlock: two 3x3 conv+BN, identity or 1x1-conv+BN shortcut, ReLU after the add."""
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.relu = nn.ReLU()
            self.downsample: nn.Module | None = None
            if stride != 1 or c_in != c_out:
                self.downsample = nn.Sequential(
                    nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
                )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    return BasicBlock()


def resnet18() -> nn.Module:
    """ResNet-18 (He et al. 2016) for 3x224x224 input and 1000 classes, random weights."""
    import torch
    from torch import nn

    torch.manual_seed(105)
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
    ]  # fmt: skip
    c_in = 64
    for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_basic_block(c_in, c_out, stride), _basic_block(c_out, c_out, 1)]
        c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    model = nn.Sequential(*layers)
    _kaiming_init(model)
    _randomise_batchnorm(model, MODELS["resnet18"].input_shape)
    return model.eval()


def _inverted_residual(c_in: int, c_out: int, stride: int, expand: int) -> nn.Module:
    """MobileNetV2 inverted residual: 1x1 expand, 3x3 depthwise, 1x1 linear projection."""
    from torch import nn

    hidden = c_in * expand

    def conv_bn(ci: int, co: int, k: int, s: int, groups: int, relu6: bool) -> list[nn.Module]:
        mods: list[nn.Module] = [
            nn.Conv2d(ci, co, k, s, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(co),
        ]
        return mods + [nn.ReLU6()] if relu6 else mods

    class InvertedResidual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            mods: list[nn.Module] = []
            if expand != 1:
                mods += conv_bn(c_in, hidden, 1, 1, 1, True)
            mods += conv_bn(hidden, hidden, 3, stride, hidden, True)
            mods += conv_bn(hidden, c_out, 1, 1, 1, False)
            self.conv = nn.Sequential(*mods)
            self.use_residual = stride == 1 and c_in == c_out

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv(x) if self.use_residual else self.conv(x)

    return InvertedResidual()


def mobilenet_v2() -> nn.Module:
    """MobileNetV2 (Sandler et al. 2018), width 1.0, 3x224x224 input, 1000 classes, random weights."""
    import torch
    from torch import nn

    torch.manual_seed(106)
    # (expansion t, channels c, repeats n, first stride s), as in the paper's table 2
    settings = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))  # fmt: skip
    layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6()]
    c_in = 32
    for t, c, n, s in settings:
        for i in range(n):
            layers.append(_inverted_residual(c_in, c, s if i == 0 else 1, t))
            c_in = c
    layers += [nn.Conv2d(c_in, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(1280, 1000)]
    model = nn.Sequential(*layers)
    _kaiming_init(model)
    _randomise_batchnorm(model, MODELS["mobilenet_v2"].input_shape)
    return model.eval()


def alexnet_small() -> nn.Module:
    """AlexNet (Krizhevsky et al. 2012) with channels divided by 4 and fc widths 1024-1024-1000.

    conv11x11/4 pad 2 (24), ReLU, LRN, maxpool 3/2; conv5x5 pad 2 (64), ReLU, LRN, maxpool 3/2;
    conv3x3 (96, 96, 64) with ReLU; maxpool 3/2 -> 64x6x6; dropout, fc 2304->1024, ReLU, dropout,
    fc 1024->1024, ReLU, fc 1024->1000.  The LRN nodes use the paper's n=5, alpha=1e-4,
    beta=0.75, k=2.
    """
    import torch
    from torch import nn

    torch.manual_seed(107)
    model = nn.Sequential(
        nn.Conv2d(3, 24, 11, 4, 2), nn.ReLU(), _lrn_module(5, 1e-4, 0.75, 2.0), nn.MaxPool2d(3, 2),
        nn.Conv2d(24, 64, 5, 1, 2), nn.ReLU(), _lrn_module(5, 1e-4, 0.75, 2.0), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 96, 3, 1, 1), nn.ReLU(),
        nn.Conv2d(96, 96, 3, 1, 1), nn.ReLU(),
        nn.Conv2d(96, 64, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(),
        nn.Dropout(0.5), nn.Linear(64 * 6 * 6, 1024), nn.ReLU(),
        nn.Dropout(0.5), nn.Linear(1024, 1024), nn.ReLU(),
        nn.Linear(1024, 1000),
    ).eval()  # fmt: skip
    _kaiming_init(model)
    _normalise_sequential(model, MODELS["alexnet_small"].input_shape)
    return model


def vgg16_small() -> nn.Module:
    """VGG-16 (configuration D, Simonyan and Zisserman 2015) with channels divided by 8.

    13 conv3x3 pad 1 + ReLU in five blocks (8, 16, 32, 64, 64 channels), each ending in maxpool 2,
    then fc 3136->512, ReLU, dropout, fc 512->512, ReLU, dropout, fc 512->1000.
    """
    import torch
    from torch import nn

    torch.manual_seed(108)
    layers: list[nn.Module] = []
    c_in = 3
    for c_out, n_convs in ((8, 2), (16, 2), (32, 3), (64, 3), (64, 3)):
        for _ in range(n_convs):
            layers += [nn.Conv2d(c_in, c_out, 3, 1, 1), nn.ReLU()]
            c_in = c_out
        layers.append(nn.MaxPool2d(2, 2))
    layers += [
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 512), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(512, 1000),
    ]  # fmt: skip
    model = nn.Sequential(*layers).eval()
    _kaiming_init(model)
    _normalise_sequential(model, MODELS["vgg16_small"].input_shape)
    return model


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------


def build_model(name: str) -> nn.Module:
    """The registry entry ``name`` as a torch module in eval mode (same weights on every call)."""
    spec = MODELS[name]
    module = globals()[spec.builder]()
    return module.eval()


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Silence what the exporters print: Python warnings, stdout, and the ``torch.onnx`` loggers.

    The dynamo exporter logs, for instance, one line per torchvision operator it cannot register
    (torchvision is not installed); none of this is actionable for a fixed benchmark network.
    """
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.onnx._internal.exporter._registration")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def export_onnx(
    model: nn.Module,
    input_shape: Sequence[int],
    path: Path,
    *,
    opset: int,
    exporter: Exporter,
    output_names: Sequence[str] = ("output",),
) -> None:
    """Export ``model`` to ``path`` with a fixed input shape, silencing the exporters' chatter.

    TorchScript exports keep ``BatchNormalization`` nodes (``TrainingMode.PRESERVE`` on a model in
    eval mode switches off the exporter's Conv+BN fusion while exporting inference semantics).
    Dynamo exports embed the weights in the file (no external data).
    """
    import torch

    model = model.eval()
    x = torch.zeros(*input_shape)
    with _quiet_exporters():
        if exporter == "torchscript":
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=["input"],
                output_names=list(output_names),
                training=torch.onnx.TrainingMode.PRESERVE,
                do_constant_folding=True,
            )
        elif exporter == "dynamo":
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=True,
                opset_version=opset,
                input_names=["input"],
                output_names=list(output_names),
                external_data=False,
                optimize=True,
                verbose=False,
                report=False,
            )
        else:
            raise ValueError(f"unknown exporter {exporter!r}")


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``numpy.savez`` to exactly ``path`` (no ``.npz`` suffix appended)."""
    import numpy as np

    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _select(only: Iterable[str] | None) -> list[ModelSpec]:
    """The registry entries named in ``only`` (all of them for ``None``), in the order given."""
    if only is None:
        return list(MODELS.values())
    names = list(only)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise KeyError(f"unknown benchmark model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}")
    return [MODELS[n] for n in names]


def build_models(
    outdir: str | os.PathLike[str],
    only: Iterable[str] | None = None,
    progress: Callable[[str], object] | None = print,
) -> list[Path]:
    """Build the benchmark networks and write them as ONNX files into ``outdir``.

    Args:
        outdir: folder to write into (created if missing).  Files are always rebuilt, each written
            under a temporary name and renamed into place.
        only: registry names to build (default: all of :data:`MODELS`), in that order.
        progress: called with one line per model (opset, exporter, size, build time) and a final
            line with the total time; ``None`` for silence.

    Returns:
        The paths written: each ``<name>.onnx`` followed by that model's side files (such as
        ``digits_test.npz``).

    Raises:
        KeyError: ``only`` names a model that is not in :data:`MODELS`.
    """
    specs = _select(only)
    say = progress if progress is not None else (lambda _msg: None)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    t_start = time.perf_counter()
    for spec in specs:
        t0 = time.perf_counter()
        model = build_model(spec.name)
        path = out / spec.filename
        atomic_write_with(
            path,
            partial(
                export_onnx,
                model,
                spec.input_shape,
                opset=spec.opset,
                exporter=spec.exporter,
                output_names=spec.outputs,
            ),
        )
        written.append(path)
        side_files = globals()[spec.extras]() if spec.extras is not None else {}
        for filename, arrays in side_files.items():
            atomic_write_with(out / filename, partial(_save_npz, arrays=arrays))
            written.append(out / filename)
        size_mb = path.stat().st_size / 1e6
        elapsed = time.perf_counter() - t0
        say(f"{spec.name:<20} opset {spec.opset:<2} {spec.exporter:<11} {size_mb:8.2f} MB {elapsed:6.2f} s")
    say(f"built {len(written)} file(s) into {out} in {time.perf_counter() - t_start:.1f} s")
    return written
