"""Batch normalisation folded into the convolution before it, for inference.

At inference a BatchNormalization layer is a fixed per-channel affine map,
y = (x − mean)·s + β with s = γ / √(var + ε), so after a convolution it folds into that
convolution: the kernel times s, the bias (b − mean)·s + β. The network then computes the same
function (to float rounding) with one layer fewer per conv-BN pair.

Why only for bf16: under Keras' mixed_bfloat16 policy every BN computes in float32, so each one
casts a bf16 feature map up and its result back down — two extra passes over a full-resolution map
per BN, 33 BN layers on B's path to the σ map — and it stands between the convolution and its
activation, so the conv, bias and LeakyReLU cannot be fused. In fp32 the folded and the plain graph
run at the same speed (measured), and fp32 stays the original graph op for op.
"""
import copy

import numpy as np

FOLDABLE = "BatchNormalization"
INTO = ("Conv2D",)


def fold_batch_norms(model):
    """The same functional model with every BatchNormalization that directly follows a convolution
    (whose output nothing else reads) folded into that convolution. For inference only: the folded
    model has no BN layers left to train.

    Args:
        model: a functional keras.Model with its weights (B in fp32 or bf16; each layer called once).

    Returns:
        keras.Model with the same inputs and outputs, the same layer names and dtype policies, minus
        the folded BN layers; its convolutions carry the folded weights.

    Example:
        >>> model, encoding, _ = load_blur_net("run/blur_net.weights.h5", precision="bf16")
        >>> fast = fold_batch_norms(model)
        >>> fast(images)["defocus"]  # ≈ model(images, training=False)["defocus"]
    """
    import keras

    config = model.get_config()
    entries = {entry["name"]: entry for entry in config["layers"]}
    readers = _readers(config)
    folds = {}  # BN name → the tensor config of the convolution output it reads
    for entry in config["layers"]:
        if entry["class_name"] != FOLDABLE or len(entry["inbound_nodes"]) != 1:
            continue
        arguments = entry["inbound_nodes"][0]["args"]
        if len(arguments) != 1 or not _is_tensor(arguments[0]):
            continue
        source = arguments[0]["config"]["keras_history"][0]
        conv = entries.get(source, {})
        if conv.get("class_name") in INTO and conv["config"].get("activation") in (None, "linear") and readers[source] == 1:
            folds[entry["name"]] = arguments[0]
            conv["config"]["use_bias"] = True  # the fold gives every folded conv a bias
    if not folds:
        return model
    config["layers"] = [_rewired(entry, folds) for entry in config["layers"] if entry["name"] not in folds]
    config["output_layers"] = _rewired(config["output_layers"], folds)
    folded = keras.Model.from_config(config)
    absorbed = {tensor["config"]["keras_history"][0]: model.get_layer(bn) for bn, tensor in folds.items()}
    for layer in folded.layers:
        original = model.get_layer(layer.name)
        if layer.name in absorbed:
            layer.set_weights(_folded_weights(original, absorbed[layer.name]))
        else:
            layer.set_weights(original.get_weights())
    return folded


def _folded_weights(conv, batch_norm):
    """[kernel·s, (bias − mean)·s + β] for a conv followed by `batch_norm` (channels last)."""
    kernel = np.asarray(conv.kernel, np.float64)
    bias = np.asarray(conv.bias, np.float64) if conv.use_bias else np.zeros(kernel.shape[-1])
    mean = np.asarray(batch_norm.moving_mean, np.float64)
    variance = np.asarray(batch_norm.moving_variance, np.float64)
    gamma = np.asarray(batch_norm.gamma, np.float64) if batch_norm.scale else 1.0
    beta = np.asarray(batch_norm.beta, np.float64) if batch_norm.center else 0.0
    scale = gamma / np.sqrt(variance + batch_norm.epsilon)
    return [(kernel * scale).astype(np.float32), ((bias - mean) * scale + beta).astype(np.float32)]


def _is_tensor(value):
    return isinstance(value, dict) and value.get("class_name") == "__keras_tensor__"


def _walk_tensors(value):
    """Every tensor reference in a piece of a functional config."""
    if _is_tensor(value):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk_tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _walk_tensors(item)


def _readers(config):
    """How many times each layer's output is read, by other layers or as a model output."""
    counts = {entry["name"]: 0 for entry in config["layers"]}
    for entry in config["layers"]:
        for tensor in _walk_tensors(entry["inbound_nodes"]):
            counts[tensor["config"]["keras_history"][0]] += 1
    for name in _output_names(config["output_layers"]):
        counts[name] += 1
    return counts


def _output_names(outputs):
    """Layer names in a config's output_layers ([name, node, index] lists, nested in lists/dicts)."""
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if len(outputs) == 3 and isinstance(outputs[0], str):
        return [outputs[0]]
    return [name for item in outputs for name in _output_names(item)]


def _rewired(value, folds):
    """`value` (a config piece) with every reference to a folded BN's output pointing at its conv's."""
    if _is_tensor(value):
        return copy.deepcopy(folds.get(value["config"]["keras_history"][0], value))
    if isinstance(value, (list, tuple)) and len(value) == 3 and isinstance(value[0], str) and value[0] in folds:
        return list(folds[value[0]]["config"]["keras_history"])  # an output_layers entry
    if isinstance(value, dict):
        return {key: _rewired(item, folds) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_rewired(item, folds) for item in value)
    return value
