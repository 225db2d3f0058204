"""Reading Caffe `.caffemodel` files (NetParameter protobufs) without Caffe or protobuf (PARK17.md §6).

A `.caffemodel` is a protobuf NetParameter. Only the few fields that carry weights are decoded:
layers (new-style `layer` = 100 or old-style V1 `layers` = 2), their names and types, and their
BlobProtos (shape, float or double data, or the legacy num/channels/height/width dimensions).
Everything else is skipped by wire type, so prototxt-only settings never matter.

A damaged file is read as far as it goes; `read_park17_blobs` then reports, in one error, where the
damage is and every layer that is missing or has the wrong shape.
"""
import dataclasses
import pathlib

import numpy as np

from dmenet.weights.pretrained import WeightsMismatchError, WeightsUnavailableError

# Protobuf wire types.
_VARINT, _FIXED64, _LENGTH_DELIMITED, _START_GROUP, _END_GROUP, _FIXED32 = 0, 1, 2, 3, 4, 5

# NetParameter fields.
_NET_NAME, _NET_LAYERS_V1, _NET_LAYER = 1, 2, 100
# LayerParameter (new style) and V1LayerParameter (old style) fields.
_LAYER_NAME, _LAYER_TYPE, _LAYER_BLOBS = 1, 2, 7
_V1_NAME, _V1_TYPE, _V1_BLOBS = 4, 5, 6
# BlobProto fields.
_BLOB_NUM, _BLOB_CHANNELS, _BLOB_HEIGHT, _BLOB_WIDTH = 1, 2, 3, 4
_BLOB_DATA, _BLOB_SHAPE, _BLOB_DOUBLE_DATA = 5, 7, 8
_SHAPE_DIM = 1

# V1LayerParameter.LayerType values of the layers that carry weights or commonly appear around them.
_V1_TYPE_NAMES = {
    4: "Convolution", 5: "Data", 6: "Dropout", 8: "Flatten", 9: "HDF5Data", 14: "InnerProduct",
    17: "Pooling", 18: "ReLU", 20: "Softmax", 21: "SoftmaxWithLoss", 1: "Accuracy", 3: "Concat",
}

# The released network's weight blobs, in Caffe's layout: conv (out, in, kh, kw), dense (out, in).
PARK17_BLOB_SHAPES = {
    "conv1": ((25, 3, 3, 3), (25,)),
    "conv2": ((50, 25, 3, 3), (50,)),
    "conv3": ((50, 50, 3, 3), (50,)),
    "conv4": ((25, 50, 1, 1), (25,)),
    "fc1": ((300, 145), (300,)),
    "fc2": ((150, 300), (150,)),
    "fc3": ((11, 150), (11,)),
}


class CaffeModelError(WeightsMismatchError):
    """A .caffemodel that is damaged, truncated or not the expected network; the message lists every problem."""


class _Truncated(Exception):
    """The data ends inside a field (raised while parsing, turned into a readable note)."""


@dataclasses.dataclass
class CaffeLayer:
    name: str
    type: str
    blobs: list


def _varint(buffer, position):
    result, shift = 0, 0
    while True:
        if position >= len(buffer):
            raise _Truncated(f"a varint at byte {position} runs past the end")
        byte = buffer[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise ValueError(f"a varint longer than 10 bytes at byte {position}")


def _fields(buffer, start=0, end=None, base=0):
    """Yield (field number, wire type, value, offset) of one message; value is int or a memoryview."""
    end = len(buffer) if end is None else end
    position = start
    while position < end:
        offset = position
        key, position = _varint(buffer, position)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError(f"field number 0 at byte {base + offset}")
        if wire == _VARINT:
            value, position = _varint(buffer, position)
        elif wire == _FIXED64:
            value, position = buffer[position:position + 8], position + 8
        elif wire == _FIXED32:
            value, position = buffer[position:position + 4], position + 4
        elif wire == _LENGTH_DELIMITED:
            length, position = _varint(buffer, position)
            value, position = buffer[position:position + length], position + length
        else:
            raise ValueError(f"unsupported wire type {wire} (field {number}) at byte {base + offset}")
        if position > end:
            raise _Truncated(f"field {number} starting at byte {base + offset} runs past the end of its message")
        yield number, wire, value, offset


def _packed_varints(value, wire):
    if wire == _VARINT:
        return [value]
    numbers, position = [], 0
    while position < len(value):
        number, position = _varint(value, position)
        numbers.append(number)
    return numbers


def _parse_blob(buffer):
    """A BlobProto → float32 ndarray with its declared shape (legacy 4-D dims when no `shape`)."""
    shape, legacy = None, {}
    floats, doubles = [], []
    for number, wire, value, _ in _fields(buffer):
        if number == _BLOB_SHAPE and wire == _LENGTH_DELIMITED:
            dims = []
            for dim_number, dim_wire, dim_value, _ in _fields(value):
                if dim_number == _SHAPE_DIM:
                    dims.extend(_packed_varints(dim_value, dim_wire))
            shape = tuple(dims)
        elif number in (_BLOB_NUM, _BLOB_CHANNELS, _BLOB_HEIGHT, _BLOB_WIDTH) and wire == _VARINT:
            legacy[number] = value
        elif number == _BLOB_DATA:
            if wire == _LENGTH_DELIMITED:
                if len(value) % 4:
                    raise ValueError("packed float data whose length is not a multiple of 4")
                floats.append(np.frombuffer(value, "<f4"))
            elif wire == _FIXED32:
                floats.append(np.frombuffer(value, "<f4"))
        elif number == _BLOB_DOUBLE_DATA:
            if wire == _LENGTH_DELIMITED:
                if len(value) % 8:
                    raise ValueError("packed double data whose length is not a multiple of 8")
                doubles.append(np.frombuffer(value, "<f8"))
            elif wire == _FIXED64:
                doubles.append(np.frombuffer(value, "<f8"))
    data = np.concatenate(floats) if floats else np.concatenate(doubles) if doubles else np.zeros(0)
    data = data.astype(np.float32)
    if shape is None:
        # Legacy blobs are always 4-D; Caffe's defaults for absent dims are 0, which read as "empty".
        shape = tuple(legacy.get(k, 0) for k in (_BLOB_NUM, _BLOB_CHANNELS, _BLOB_HEIGHT, _BLOB_WIDTH))
        if not legacy:
            shape = (data.size,)
    if int(np.prod(shape, dtype=np.int64)) != data.size:
        raise ValueError(f"declares shape {shape} but holds {data.size} values")
    return data.reshape(shape)


def _parse_layer(buffer, name_field, type_field, blobs_field):
    name, type_name, blobs = "", "", []
    for number, wire, value, _ in _fields(buffer):
        if number == name_field and wire == _LENGTH_DELIMITED:
            name = bytes(value).decode("utf-8", "replace")
        elif number == type_field:
            if wire == _LENGTH_DELIMITED:
                type_name = bytes(value).decode("utf-8", "replace")
            elif wire == _VARINT:
                type_name = _V1_TYPE_NAMES.get(value, f"V1 type {value}")
        elif number == blobs_field and wire == _LENGTH_DELIMITED:
            try:
                blobs.append(_parse_blob(value))
            except (ValueError, _Truncated) as error:
                raise ValueError(f"layer {name or '?'}: blob {len(blobs)} {error}") from None
    return CaffeLayer(name, type_name, blobs)


def parse_net(data):
    """(net name, [CaffeLayer …], damage note or None) from the bytes of a NetParameter.

    Parsing stops at the first damaged field; the layers read before it are returned with a note
    that says where the damage is, so the caller can report everything in one message.
    """
    buffer = memoryview(data)
    net_name, layers = "", []
    try:
        for number, wire, value, offset in _fields(buffer):
            if wire != _LENGTH_DELIMITED:
                continue
            if number == _NET_NAME:
                net_name = bytes(value).decode("utf-8", "replace")
            elif number in (_NET_LAYER, _NET_LAYERS_V1):
                fields = (_LAYER_NAME, _LAYER_TYPE, _LAYER_BLOBS) if number == _NET_LAYER else (_V1_NAME, _V1_TYPE, _V1_BLOBS)
                try:
                    layers.append(_parse_layer(value, *fields))
                except (ValueError, _Truncated) as error:
                    return net_name, layers, f"layer starting at byte {offset} is damaged ({error})"
    except _Truncated as error:
        return net_name, layers, f"the file is truncated: {error} ({len(buffer)} bytes in all)"
    except ValueError as error:
        return net_name, layers, f"not a valid protobuf from here on: {error}"
    return net_name, layers, None


def _read_bytes(path):
    path = pathlib.Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"{path}: no such file")
    try:
        return path.read_bytes()
    except OSError as error:
        raise CaffeModelError(f"{path}: cannot be read ({error})") from None


def read_caffemodel(path):
    """Every layer's blobs from a .caffemodel, as {layer name: [float32 arrays]} in file order.

    Layers without blobs (ReLU, pooling, data layers …) are included with an empty list. Blob shapes
    are as stored (Caffe layout; legacy files give 4-D num/channels/height/width shapes).

    Args:
        path: the .caffemodel file.

    Returns:
        dict layer name → list of np.float32 arrays.

    Raises:
        CaffeModelError: the file is not a readable NetParameter or is damaged (message names the file).

    Example:
        >>> blobs = read_caffemodel("DHDE_model.caffemodel")
        >>> blobs["conv1"][0].shape
        (25, 3, 3, 3)
    """
    return {layer.name: layer.blobs for layer in read_caffemodel_layers(path, strict=True)}


def read_caffemodel_layers(path, strict=True):
    """[CaffeLayer(name, type, blobs) …] in file order; with strict=False damage is tolerated and ignored."""
    _, layers, damage = parse_net(_read_bytes(path))
    if damage and strict:
        read = ", ".join(layer.name for layer in layers) or "none"
        raise CaffeModelError(f"{path}: damaged or not a .caffemodel — {damage}; layers read before the damage: {read}")
    if strict and not layers:
        raise CaffeModelError(f"{path}: no layers found — not a Caffe .caffemodel (NetParameter) file")
    return layers


FILE_SIGNATURES = (
    (b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"\x89HDF", "an HDF5 file such as Keras weights"),
    (b"PK\x03\x04", "a zip or .npz archive such as the DMENet checkpoint"), (b"%PDF", "a PDF document"),
    (b"GIF8", "a GIF image"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
)


def _looks_like(data):
    """' (it looks like a JPEG image)' for a file of a kind people mistake for weights, else ''."""
    for signature, kind in FILE_SIGNATURES:
        if data.startswith(signature):
            return f" (it looks like {kind})"
    return ""


def _fit_shape(blob, expected):
    """The blob in `expected` shape, or None. Legacy 4-D blobs (1, 1, out, in) fit (out, in)."""
    if blob.shape == expected:
        return blob
    strip = lambda shape: tuple(shape[next((i for i, n in enumerate(shape) if n != 1), len(shape)):])
    if strip(blob.shape) == strip(expected) and blob.size == int(np.prod(expected)):
        return blob.reshape(expected)
    return None


def read_park17_blobs(path, expected=None):
    """The weight blobs of Park et al.'s classifier, checked: {layer: (weights, bias)} in Caffe layout.

    Args:
        path: the .caffemodel (the official DHDE_model.caffemodel or a re-trained one of the same net).
        expected: {layer: (weight shape, bias shape)}; default PARK17_BLOB_SHAPES.

    Returns:
        dict "conv1" … "fc3" → (weights, bias) float32 arrays with exactly the expected shapes.

    Raises:
        CaffeModelError: one message naming the file, where it is damaged (if it is), and every layer
            that is missing, lacks a blob, has a wrong shape or contains NaN/infinity.

    Example:
        >>> blobs = read_park17_blobs("DHDE_model.caffemodel")
        >>> blobs["fc1"][0].shape
        (300, 145)
    """
    expected = PARK17_BLOB_SHAPES if expected is None else expected
    data = _read_bytes(path)
    _, layers, damage = parse_net(data)
    by_name = {layer.name: layer for layer in layers}
    if not any(name in by_name for name in expected):
        raise CaffeModelError(f"{path} is not a Caffe model{_looks_like(data)}; pass Park et al.'s DHDE_model.caffemodel or a "
                              ".weights.h5 from `train.py --method park17`, or leave --weights out for the official file")
    problems = [damage] if damage else []
    found = {}
    for name, shapes in expected.items():
        layer = by_name.get(name)
        if layer is None:
            problems.append(f"{name}: missing")
            continue
        if len(layer.blobs) < len(shapes):
            problems.append(f"{name}: {len(layer.blobs)} blob(s), expected {len(shapes)} (weights and bias)")
            continue
        fitted = []
        for role, blob, shape in zip(("weights", "bias"), layer.blobs, shapes):
            value = _fit_shape(blob, tuple(shape))
            if value is None:
                problems.append(f"{name} {role}: shape {blob.shape}, expected {tuple(shape)}")
            elif not np.all(np.isfinite(value)):
                problems.append(f"{name} {role}: contains NaN or infinity")
            fitted.append(value)
        found[name] = tuple(fitted)
    if problems:
        raise CaffeModelError(
            f"{path} is not a usable Park et al. (DHDE) model ({len(problems)} problem(s)):\n  " + "\n  ".join(problems)
        )
    return found
