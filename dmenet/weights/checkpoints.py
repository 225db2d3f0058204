"""Our checkpoint of B: Keras weights (`*.weights.h5`) with the metadata to read the output as σ.

The metadata (encoding, σ_max, provenance) lives as a JSON attribute on the HDF5 root, so a
checkpoint is one file that cannot lose its unit. Both the official .npz and ours load through
`load_blur_net`, which is what every tool calls.
"""
import json
import pathlib

from dmenet.files.images import atomic_path
from dmenet.units import DefocusEncoding
from dmenet.weights.pretrained import WeightsMismatchError, WeightsUnavailableError, load_official_npz

METADATA_ATTRIBUTE = "dmenet_metadata"
WEIGHTS_SUFFIX = ".weights.h5"
WEIGHTS_ENV = "DMENET_WEIGHTS"

HOW_TO_GET_WEIGHTS = (
    "Pass --weights PATH with one of:\n"
    "  * a checkpoint trained here (train.py writes RUN_DIR/blur_net.weights.h5; `python train.py --demo` makes one in minutes);\n"
    "  * the official DMENet_BDCS.npz (from the authors' DMENet repository), used directly or converted once with\n"
    "    `python infer.py --convert-official DMENet_BDCS.npz --output dmenet_official.weights.h5`.\n"
    f"Setting {WEIGHTS_ENV}=PATH works too.\n"
    "Without a DMENet checkpoint: --method park17 (Park et al. 2017; its official weights are public and downloaded once)."
)


def write_weights_with_metadata(model, path, record, what="checkpoint"):
    """Keras weights plus a JSON record on the HDF5 root, written atomically; `path` must end in .weights.h5."""
    import h5py

    path = pathlib.Path(path)
    if not path.name.endswith(WEIGHTS_SUFFIX):
        raise ValueError(f"{what} path must end in {WEIGHTS_SUFFIX}: {path}")
    with atomic_path(path) as temporary:
        # Keras insists on the .weights.h5 ending, which the temporary name lacks.
        staged = temporary.with_name(temporary.name.removesuffix(WEIGHTS_SUFFIX).removesuffix(".h5") + WEIGHTS_SUFFIX)
        try:
            model.save_weights(staged)
            with h5py.File(staged, "a") as f:
                f.attrs[METADATA_ATTRIBUTE] = json.dumps(record)
            staged.replace(temporary)
        finally:
            staged.unlink(missing_ok=True)
    return path


def read_metadata_record(path, missing_hint):
    """The JSON record of a weight file; a damaged file or one without a record is refused with the hint."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get(METADATA_ATTRIBUTE)
    except OSError as error:
        raise WeightsMismatchError(
            f"{path}: not a readable HDF5 weight file ({error}); it may be damaged or incomplete: "
            "copy it again, or pass another checkpoint with --weights"
        ) from None
    if raw is None:
        raise WeightsMismatchError(f"{path}: a Keras weight file without metadata; {missing_hint}")
    return json.loads(raw)


def save_blur_net(model, path, encoding, metadata=None):
    """Write B's weights and metadata atomically; `path` must end in .weights.h5 (Keras' rule)."""
    record = {"network": "DMENet-B", "encoding": encoding.to_dict(), **(metadata or {})}
    return write_weights_with_metadata(model, path, record)


def read_metadata(path):
    return read_metadata_record(
        path, "pass a checkpoint written by train.py (RUN_DIR/blur_net.weights.h5) or by infer.py --convert-official")


def resolve_weights_path(path=None):
    """The weights to use: the argument, or $DMENET_WEIGHTS; otherwise a message on how to get some."""
    import os

    path = path or os.environ.get(WEIGHTS_ENV)
    if not path:
        raise WeightsUnavailableError("No weights given.\n" + HOW_TO_GET_WEIGHTS)
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"{path}: no such file.\n" + HOW_TO_GET_WEIGHTS)
    return path


def load_blur_net(path=None, precision="fp32"):
    """(B with weights, its DefocusEncoding, metadata) from our checkpoint or the official .npz.

    Args:
        path: a .weights.h5 written by save_blur_net or the official DMENet_BDCS.npz
            (None = $DMENET_WEIGHTS).
        precision: "fp32" or "bf16" (float32 weights, bfloat16 computation; dmenet.inference.precision).

    Returns:
        (model, encoding, metadata).

    Example:
        >>> model, encoding, metadata = load_blur_net("run/blur_net.weights.h5")
    """
    from dmenet.inference.precision import dtype_policy_scope, keep_output_in_float32
    from dmenet.networks.blur_net import build_blur_net

    path = resolve_weights_path(path)
    with dtype_policy_scope(precision):
        model = build_blur_net()
    if precision != "fp32":
        keep_output_in_float32(model)
    if path.suffix == ".npz":
        encoding = load_official_npz(model, path)
        return model, encoding, {"network": "DMENet-B", "source": "official npz", "file": str(path)}
    if not path.name.endswith(".h5"):
        raise WeightsMismatchError(f"{path}: expected a .weights.h5 checkpoint or the official .npz; pass one of those with --weights")
    metadata = read_metadata(path)
    try:
        model.load_weights(path)
    except Exception as error:
        raise WeightsMismatchError(
            f"{path}: weights do not fit network B ({error}); is it a checkpoint of another network?"
        ) from None
    return model, DefocusEncoding.from_dict(metadata["encoding"]), metadata


def convert_official(npz_path, output_path):
    """Import the official npz once and store it in our format (with the official σ decoding)."""
    model, encoding, _ = load_blur_net(npz_path)
    return save_blur_net(model, output_path, encoding, {"source": f"converted from {pathlib.Path(npz_path).name}"})
