"""dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1.dat``) as ONNX.

A pure-Python reader of dlib's serialization and a converter written with
``onnx.helper``: no dlib is needed to build or to run the model.

Serialization facts used here: an integer is a control byte (byte count in
the low nibble, 0x80 when negative) then its little-endian magnitude; a float
is an integer mantissa and an integer exponent (m * 2**e); a bool is the
character '0' or '1'; a tensor is version 2, then n, k, nr, nc, then raw
little-endian float32.  A layer writes its version, then its subnetwork, then
its details; tag and skip layers write only a version (1) and their
subnetwork, so they carry no ids: a lone marker is tag1, two in a row are
skip1 over tag2 (dlib's ``residual_down``).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHIP_SIZE = 150


class DlibFormatError(ValueError):
    """The file is not a dlib network this converter reads."""

    pass


@dataclass
class Layer:
    """One layer of a dlib network, with the one below it."""

    kind: str  # con_4, affine_, relu_, max_pool_2, avg_pool_2, add_prev_, fc_2, tag, skip, input
    sub: Layer | None = None
    params: dict = field(default_factory=dict)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def int(self) -> int:
        control = self.data[self.pos]
        size = control & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        return float(mantissa) * 2.0**exponent

    def str(self) -> str:
        size = self.int()
        text = self.data[self.pos : self.pos + size].decode("ascii")
        self.pos += size
        return text

    def bools(self, count: builtins.int) -> None:
        chunk = self.data[self.pos : self.pos + count]
        if any(b not in b"01" for b in chunk):
            raise DlibFormatError(f"expected {count} bools at byte {self.pos}")
        self.pos += count

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise DlibFormatError(f"tensor version {version} at byte {self.pos}")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        array = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).reshape(shape)
        self.pos += 4 * count
        return array.astype(np.float32)

    def alias(self) -> tuple[builtins.int, builtins.int, builtins.int, builtins.int]:
        self.int()  # version
        return self.int(), self.int(), self.int(), self.int()


def _read_details(r: _Reader) -> Layer:
    kind = r.str()
    p: dict = {}
    if kind == "con_4":
        params = r.tensor().ravel()
        p["filters"], p["kernel"] = r.int(), (r.int(), r.int())
        p["stride"], p["padding"] = (r.int(), r.int()), (r.int(), r.int())
        weight_shape, bias_shape = r.alias(), r.alias()
        for _ in range(4):
            r.float()  # learning-rate and weight-decay multipliers
        n_weight = int(np.prod(weight_shape))
        p["weight"] = params[:n_weight].reshape(weight_shape)
        p["bias"] = params[n_weight : n_weight + int(np.prod(bias_shape))]
    elif kind == "affine_":
        params = r.tensor().ravel()
        gamma_shape, beta_shape = r.alias(), r.alias()
        p["mode"] = r.int()
        half = int(np.prod(gamma_shape))
        p["gamma"], p["beta"] = params[:half], params[half : half + int(np.prod(beta_shape))]
    elif kind in ("max_pool_2", "avg_pool_2"):
        p["kernel"], p["stride"], p["padding"] = (r.int(), r.int()), (r.int(), r.int()), (r.int(), r.int())
    elif kind == "fc_2":
        p["outputs"], p["inputs"] = r.int(), r.int()
        params = r.tensor().ravel()
        weight_shape, bias_shape = r.alias(), r.alias()
        p["bias_mode"] = r.int()
        for _ in range(4):
            r.float()
        n_weight = int(np.prod(weight_shape))
        p["weight"] = params[:n_weight].reshape(p["inputs"], p["outputs"])
        bias = params[n_weight : n_weight + int(np.prod(bias_shape))]
        p["bias"] = bias if bias.size else None  # fc_no_bias stores an empty alias
    elif kind not in ("relu_", "add_prev_"):
        raise DlibFormatError(f"unsupported dlib layer {kind!r}")
    return Layer(kind, params=p)


def _read_layer(r: _Reader) -> Layer:
    version = r.int()
    if version == 1:  # tag or skip marker
        return Layer("marker", sub=_read_layer(r))
    if version == 2:  # add_layer over another layer
        sub = _read_layer(r)
        layer = _read_details(r)
        r.bools(3)
        for _ in range(3):
            r.tensor()  # gradients and cached outputs: empty
        layer.sub = sub
        return layer
    if version == 3:  # add_layer over the input layer
        kind = r.str()
        if kind != "input_rgb_image_sized":
            raise DlibFormatError(f"unsupported input layer {kind!r}")
        mean = [r.float() for _ in range(3)]
        size = (r.int(), r.int())
        layer = _read_details(r)
        r.bools(3)
        for _ in range(3):
            r.tensor()
        r.int()  # sample expansion factor
        layer.sub = Layer("input", params={"mean": mean, "size": size})
        return layer
    raise DlibFormatError(f"unknown layer version {version} at byte {r.pos}")


def read_network(data: bytes) -> Layer:
    """The layer tree below dlib's ``loss_metric`` layer."""
    r = _Reader(data)
    if r.int() != 1 or not r.str().startswith("loss_metric"):
        raise DlibFormatError("not a dlib metric-learning network")
    r.float(), r.float()  # margin and distance threshold of the training loss
    top = _read_layer(r)
    if r.pos != len(data):
        raise DlibFormatError(f"{len(data) - r.pos} bytes left after the network")
    _label_markers(top)
    return top


def _label_markers(top: Layer) -> None:
    layer: Layer | None = top
    while layer is not None:
        if layer.kind == "marker":
            if layer.sub is not None and layer.sub.kind == "marker":
                layer.kind, layer.sub.kind = "skip", "tag2"
                layer = layer.sub.sub
                continue
            layer.kind = "tag1"
        layer = layer.sub


def bottom_up(top: Layer) -> list[Layer]:
    """The network's layers from the input up."""
    chain = []
    layer: Layer | None = top
    while layer is not None:
        chain.append(layer)
        layer = layer.sub
    return chain[::-1]


class _GraphBuilder:
    def __init__(self):
        self.nodes, self.initializers, self.count = [], [], 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, prefix: str, array) -> str:
        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs, **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], **attrs))
        return out


def _pool_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return 1 + (size + 2 * pad - kernel) // stride


def build_onnx(top: Layer, output_transform: tuple[np.ndarray, float] | None = None) -> onnx.ModelProto:
    """ONNX graph ``chips`` (N, 3, 150, 150) RGB 0..255 float32 → ``embeddings``:
    dlib's 128-d descriptor, or with ``output_transform`` = (mean, anchor) the
    129-d unit vector ``normalise([descriptor - mean, anchor])``.

    Why the anchor: dlib's descriptors sit in a narrow cone (different people
    score ~0.83 cosine) and dlib compares them by Euclidean distance.  Centring
    alone and L2-normalising spreads them but throws away the distance to the
    mean and separates people worse; one constant extra coordinate keeps the
    geometry close to Euclidean while the cosine range opens up.
    """
    g = _GraphBuilder()
    layers = bottom_up(top)
    x = "chips"
    shape: tuple[int, ...] = (3, CHIP_SIZE, CHIP_SIZE)  # the input layer says its size
    tags: dict[str, tuple[str, tuple]] = {}
    last_tag = "tag1"
    skip_next_affine = set()
    for i, layer in enumerate(layers):
        p = layer.params
        if layer.kind == "input":
            mean = np.asarray(p["mean"], dtype=np.float32).reshape(1, 3, 1, 1)
            x = g.node("Sub", [x, g.const("input_mean", mean)])
            x = g.node("Mul", [x, g.const("input_scale", np.float32(1 / 256))])
            shape = (3, *p["size"])
        elif layer.kind == "con_4":
            weight, bias = p["weight"], p["bias"]
            above = layers[i + 1] if i + 1 < len(layers) else None
            if above is not None and above.kind == "affine_":
                # Fold the affine (frozen batch norm) into the convolution.
                gamma, beta = above.params["gamma"], above.params["beta"]
                weight = weight * gamma.reshape(-1, 1, 1, 1)
                bias = bias * gamma + beta
                skip_next_affine.add(id(above))
            (kh, kw), (sh, sw), (ph, pw) = p["kernel"], p["stride"], p["padding"]
            x = g.node(
                "Conv",
                [x, g.const("w", weight.astype(np.float32)), g.const("b", bias.astype(np.float32))],
                kernel_shape=[kh, kw],
                strides=[sh, sw],
                pads=[ph, pw, ph, pw],
            )
            shape = (p["filters"], _pool_out(shape[1], kh, sh, ph), _pool_out(shape[2], kw, sw, pw))
        elif layer.kind == "affine_":
            if id(layer) in skip_next_affine:
                continue
            x = g.node("Mul", [x, g.const("gamma", p["gamma"].reshape(1, -1, 1, 1))])
            x = g.node("Add", [x, g.const("beta", p["beta"].reshape(1, -1, 1, 1))])
        elif layer.kind == "relu_":
            x = g.node("Relu", [x])
        elif layer.kind in ("max_pool_2", "avg_pool_2"):
            (kh, kw), (sh, sw), (ph, pw) = p["kernel"], p["stride"], p["padding"]
            if kh == 0 and kw == 0:
                x = g.node("GlobalAveragePool" if layer.kind == "avg_pool_2" else "GlobalMaxPool", [x])
                shape = (shape[0], 1, 1)
            else:
                op = "MaxPool" if layer.kind == "max_pool_2" else "AveragePool"
                x = g.node(op, [x], kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw])
                shape = (shape[0], _pool_out(shape[1], kh, sh, ph), _pool_out(shape[2], kw, sw, pw))
        elif layer.kind in ("tag1", "tag2"):
            tags[layer.kind] = (x, shape)
            last_tag = layer.kind
        elif layer.kind == "skip":
            x, shape = tags["tag1"]
        elif layer.kind == "add_prev_":
            other, other_shape = tags[last_tag]
            target = tuple(max(a, b) for a, b in zip(shape, other_shape))
            x = g.node("Add", [_zero_pad(g, x, shape, target), _zero_pad(g, other, other_shape, target)])
            shape = target
        elif layer.kind == "fc_2":
            flat = g.node("Flatten", [x], axis=1)
            x = g.node("MatMul", [flat, g.const("fc_w", p["weight"].astype(np.float32))])
            if p["bias"] is not None:
                x = g.node("Add", [x, g.const("fc_b", p["bias"].astype(np.float32))])
            shape = (p["outputs"],)
        else:
            raise DlibFormatError(f"cannot convert {layer.kind}")
    if output_transform is not None:
        mean, anchor = output_transform
        x = g.node("Sub", [x, g.const("reference_mean", np.asarray(mean, dtype=np.float32).reshape(1, -1))])
        x = g.node(
            "Pad",
            [
                x,
                g.const("anchor_pads", np.asarray([0, 0, 0, 1], dtype=np.int64)),
                g.const("anchor", np.float32(anchor)),
            ],
            mode="constant",
        )
        x = g.node("LpNormalization", [x], axis=1, p=2)
        shape = (shape[0] + 1,)
    g.nodes.append(helper.make_node("Identity", [x], ["embeddings"]))
    graph = helper.make_graph(
        g.nodes,
        "dlib_resnet_face_descriptor",
        [helper.make_tensor_value_info("chips", TensorProto.FLOAT, ["batch", 3, CHIP_SIZE, CHIP_SIZE])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", shape[0]])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="memory-studio")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _zero_pad(g: _GraphBuilder, x: str, shape, target) -> str:
    """dlib's add_prev adds tensors of different sizes by zero-padding the smaller."""
    extra = [t - s for s, t in zip(shape, target)]
    if not any(extra):
        return x
    pads = [0, 0, 0, 0, 0, extra[0], extra[1], extra[2]]
    return g.node("Pad", [x, g.const("pads", np.asarray(pads, dtype=np.int64))], mode="constant")


def convert(dat_path: str, output_transform=None) -> onnx.ModelProto:
    """dlib's face descriptor network as ONNX."""
    with open(dat_path, "rb") as handle:
        return build_onnx(read_network(handle.read()), output_transform)
