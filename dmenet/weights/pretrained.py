"""Foreign weights into our networks: Keras' ImageNet VGG19 and the official DMENet_BDCS.npz.

Both are matched by name, never by position, and every mismatch is reported at once, so a damaged
or wrong file fails with a list of what is wrong instead of a shape error deep inside Keras.
"""
import os
import pathlib
import re
import zipfile

import numpy as np

from dmenet.units import OFFICIAL

VGG19_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG19_URL = "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + VGG19_FILE
VGG19_MD5 = "253f8cb515780f3b799900260a226db6"
VGG19_ENV = "DMENET_VGG19_WEIGHTS"

OFFICIAL_PREFIX = "main_net/defocus_net"
_VGG_LAYER = re.compile(r"block(\d)_conv(\d)")
_DECODER_LAYER = re.compile(r"^(u[0-4]_aux|u[0-4]|uf)_(.+)$")


class WeightsUnavailableError(RuntimeError):
    """Weights that cannot be found or downloaded; the message says what to pass instead."""


class WeightsMismatchError(ValueError):
    """A weight file whose tensors do not fit the network; the message lists every problem."""


def _layers_recursive(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers_recursive(layer)


def _vgg19_file(path=None):
    """A local VGG19 notop file: the given path, $DMENET_VGG19_WEIGHTS, Keras' cache, or a download."""
    path = path or os.environ.get(VGG19_ENV)
    if path:
        path = pathlib.Path(path).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(f"ImageNet VGG19 weights: {path} does not exist")
        return path
    import keras

    try:
        return pathlib.Path(keras.utils.get_file(VGG19_FILE, VGG19_URL, cache_subdir="models", file_hash=VGG19_MD5))
    except Exception as error:
        raise WeightsUnavailableError(
            f"ImageNet VGG19 weights are not in Keras' cache and could not be downloaded ({error}).\n"
            f"Download {VGG19_URL} on a machine with internet access, then pass its path with "
            f"--vgg19-weights PATH (or set {VGG19_ENV}=PATH), or copy it to ~/.keras/models/{VGG19_FILE}."
        ) from None


def local_vgg19_file(path=None):
    """The VGG19 notop file already on this machine (the argument, $DMENET_VGG19_WEIGHTS or Keras'
    cache), or None; never downloads (the training demo must run offline)."""
    keras_home = pathlib.Path(os.environ.get("KERAS_HOME", pathlib.Path.home() / ".keras"))
    for candidate in (path, os.environ.get(VGG19_ENV), keras_home / "models" / VGG19_FILE):
        if candidate and pathlib.Path(candidate).expanduser().is_file():
            return pathlib.Path(candidate).expanduser()
    return None


def read_vgg19_h5(path):
    """{"block1_conv1": (kernel, bias), …} from a Keras VGG19 weight file (legacy or Keras 3 layout)."""
    import h5py

    found = {}

    def visit(name, item):
        match = _VGG_LAYER.search(name)
        if isinstance(item, h5py.Dataset) and match:
            slot = 0 if item.ndim == 4 else 1
            found.setdefault(match.group(0), [None, None])[slot] = np.asarray(item)

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError as error:
        raise WeightsMismatchError(f"{path}: not a readable HDF5 weight file ({error})") from None
    incomplete = sorted(name for name, (kernel, bias) in found.items() if kernel is None or bias is None)
    if incomplete:
        raise WeightsMismatchError(f"{path}: layers without both kernel and bias: {', '.join(incomplete)}")
    return {name: tuple(pair) for name, pair in found.items()}


def load_imagenet_vgg19(model, path=None):
    """Set every blockX_convY layer of `model` (nested models included) to ImageNet VGG19 weights."""
    source = _vgg19_file(path)
    tensors = read_vgg19_h5(source)
    targets = [layer for layer in _layers_recursive(model) if _VGG_LAYER.fullmatch(layer.name)]
    if not targets:
        raise ValueError(f"{model.name} has no VGG19 convolution layers to load")
    problems = []
    for layer in targets:
        if layer.name not in tensors:
            problems.append(f"{layer.name}: missing")
            continue
        kernel, bias = tensors[layer.name]
        if kernel.shape != tuple(layer.kernel.shape) or bias.shape != tuple(layer.bias.shape):
            problems.append(f"{layer.name}: file has {kernel.shape}/{bias.shape}, layer needs {tuple(layer.kernel.shape)}")
    if problems:
        raise WeightsMismatchError(f"{source} does not fit VGG19:\n  " + "\n  ".join(problems))
    for layer in targets:
        layer.set_weights(list(tensors[layer.name]))
    return source


# ---------------------------------------------------------------- the official checkpoint


def official_prefix(layer_name):
    """Our conv/BN layer name → the official variable scope (without the variable name), or None."""
    match = _VGG_LAYER.fullmatch(layer_name)
    if match:
        return f"{OFFICIAL_PREFIX}/encoder/conv{match.group(1)}_{match.group(2)}"
    match = _DECODER_LAYER.match(layer_name)
    if match:
        return f"{OFFICIAL_PREFIX}/decoder/{match.group(1)}/{match.group(2)}"
    return None


def _conv_keys(prefix):
    return ((f"{prefix}/kernel:0", f"{prefix}/W_conv2d:0"), (f"{prefix}/bias:0", f"{prefix}/b_conv2d:0"))


def _bn_keys(prefix):
    return tuple((f"{prefix}/{name}:0",) for name in ("beta", "moving_mean", "moving_variance"))


def official_targets(blur_net):
    """(layer, alternatives for each weight key) for every layer of B the checkpoint must fill."""
    from keras import layers

    targets = []
    for layer in _layers_recursive(blur_net):
        prefix = official_prefix(layer.name)
        if prefix is None:
            continue
        if isinstance(layer, layers.Conv2D):
            targets.append((layer, _conv_keys(prefix)))
        elif isinstance(layer, layers.BatchNormalization):
            targets.append((layer, _bn_keys(prefix)))
    return targets


def read_npz(path):
    """All arrays of an .npz, with a readable error for a missing or damaged file."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"{path}: no such file")
    fix = "download DMENet_BDCS.npz again, or pass a .weights.h5 checkpoint with --weights"
    if not zipfile.is_zipfile(path):  # np.load would blame pickling for any non-zip bytes
        raise WeightsMismatchError(f"{path}: not an .npz archive (damaged or incomplete download?); {fix}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        reason = "holds Python objects, not arrays" if "allow_pickle" in str(error) else str(error)
        raise WeightsMismatchError(f"{path}: not a readable .npz archive ({reason}); {fix}") from None


def load_official_npz(blur_net, path):
    """Fill B from the official TensorLayer checkpoint; returns the encoding its outputs use.

    Only the inference tensors are read (a whitelist built from B itself); training-only tensors
    (encoder conv6_1, c_logits_*, binary_net, discriminator, optimiser slots) are ignored.
    """
    tensors = read_npz(path)
    problems, assignments = [], []
    for layer, key_options in official_targets(blur_net):
        values = []
        for options, variable in zip(key_options, layer.weights):
            key = next((k for k in options if k in tensors), None)
            if key is None:
                problems.append(f"missing {options[0]}")
                continue
            value = tensors[key]
            if value.shape != tuple(variable.shape):
                problems.append(f"{key}: shape {value.shape}, expected {tuple(variable.shape)}")
            elif not np.all(np.isfinite(value)):
                problems.append(f"{key}: contains NaN or infinity")
            values.append(value)
        assignments.append((layer, values))
    if problems:
        shown = problems[:40] + ([f"… and {len(problems) - 40} more"] if len(problems) > 40 else [])
        raise WeightsMismatchError(
            f"{path} is not a usable DMENet checkpoint ({len(problems)} problems; pass the official "
            f"DMENet_BDCS.npz or a .weights.h5 checkpoint with --weights):\n  " + "\n  ".join(shown)
        )
    for layer, values in assignments:
        layer.set_weights(values)
    return OFFICIAL
