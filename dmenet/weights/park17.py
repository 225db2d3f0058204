"""Park et al.'s classifier weights: the official .caffemodel (downloaded once, checked) or ours (.weights.h5).

Our checkpoints are Keras weight files with a JSON metadata attribute on the HDF5 root (method,
σ classes, input scale, patch orientation, provenance with the sha256 of the source), written
atomically, like DMENet-B's (dmenet/weights/checkpoints.py), so a file cannot lose what its outputs mean.
"""
import hashlib
import os
import pathlib

import numpy as np

from dmenet.park17.network import build_patch_classifier, set_caffe_weights
from dmenet.park17.params import DEFAULT_PARAMS, NUM_CLASSES, SIGMA_CLASSES
from dmenet.weights.caffemodel import read_park17_blobs
from dmenet.weights.checkpoints import read_metadata_record, write_weights_with_metadata
from dmenet.weights.pretrained import WeightsMismatchError, WeightsUnavailableError

OFFICIAL_FILE = "DHDE_model.caffemodel"
OFFICIAL_URL = (
    "https://github.com/zzangjinsun/DHDE_CVPR17/raw/500addab2055f3d559bef00e5cf3199bd526ba5e/DHDE/" + OFFICIAL_FILE
)
OFFICIAL_SHA256 = "a5f922d7622ccdd830cd02cfc0e788f3b9d3ceb038a00d7c60716ab1986ac94a"
WEIGHTS_ENV = "DMENET_PARK17_WEIGHTS"
CACHE_SUBDIR = "models"
METHOD = "park17"


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cache_root(cache_dir):
    """Keras' cache folder (get_file's rule): cache_dir, else $KERAS_HOME, else ~/.keras."""
    if cache_dir is not None:
        return pathlib.Path(cache_dir).expanduser()
    return pathlib.Path(os.environ.get("KERAS_HOME", pathlib.Path.home() / ".keras")).expanduser()


def _how_to_get(cached):
    return (
        f"Download {OFFICIAL_URL}\n"
        f"on a machine with internet access (sha256 {OFFICIAL_SHA256}), then either pass its path as the "
        f"weights (e.g. --weights PATH), set {WEIGHTS_ENV}=PATH, or copy it to {cached}."
    )


def official_cache_path(cache_dir=None):
    """Where the official DHDE_model.caffemodel is (or would be) cached: <Keras cache>/models/."""
    return _cache_root(cache_dir) / CACHE_SUBDIR / OFFICIAL_FILE


def official_caffemodel(cache_dir=None, url=None):
    """The official DHDE_model.caffemodel: from the cache, else downloaded once; its sha256 is checked.

    Args:
        cache_dir: Keras cache root (the file goes to cache_dir/models/); default $KERAS_HOME or ~/.keras.
        url: where to download from (default: the authors' repository at the pinned commit).

    Returns:
        pathlib.Path of the verified local file.

    Raises:
        WeightsUnavailableError: not cached and not downloadable; the message says where to put the file.
        WeightsMismatchError: the cached or downloaded file has the wrong checksum.
    """
    cached = official_cache_path(cache_dir)
    if cached.is_file():
        digest = sha256_of(cached)
        if digest != OFFICIAL_SHA256:
            raise WeightsMismatchError(
                f"{cached}: sha256 {digest} is not the official DHDE_model.caffemodel ({OFFICIAL_SHA256}); "
                "the file is damaged or a different model. Delete it so it is downloaded again, or pass it "
                f"explicitly as the weights if it is meant to be used."
            )
        return cached
    import keras

    # get_file silently falls back to /tmp/.keras when the cache folder does not exist yet.
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        path = keras.utils.get_file(
            OFFICIAL_FILE, url or OFFICIAL_URL, cache_dir=str(_cache_root(cache_dir)), cache_subdir=CACHE_SUBDIR,
            file_hash=OFFICIAL_SHA256, hash_algorithm="sha256",
        )
    except ValueError as error:  # get_file's checksum failure
        if "corrupted" in str(error).lower() or "hash" in str(error).lower():
            cached.unlink(missing_ok=True)  # ours (there was no file before); keep no bad copy in the cache
            raise WeightsMismatchError(
                f"The downloaded {OFFICIAL_FILE} does not have the official sha256 {OFFICIAL_SHA256} ({error}).\n"
                + _how_to_get(cached)
            ) from None
        raise WeightsUnavailableError(f"Park'17 weights could not be downloaded ({error}).\n" + _how_to_get(cached)) from None
    except Exception as error:
        raise WeightsUnavailableError(
            f"The official Park'17 weights are not cached and could not be downloaded ({type(error).__name__}: {error}).\n"
            + _how_to_get(cached)
        ) from None
    return pathlib.Path(path)


def resolve_park17_weights(weights=None, cache_dir=None):
    """The weight file to use: the argument, else ${DMENET_PARK17_WEIGHTS}, else the official file."""
    weights = weights or os.environ.get(WEIGHTS_ENV)
    if not weights:
        return official_caffemodel(cache_dir)
    path = pathlib.Path(weights).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"{path}: no such file. Give a .caffemodel (the official {OFFICIAL_FILE}) or a .weights.h5 written by "
            f"train_park17/convert_caffemodel; with no weights the official file is downloaded (or set {WEIGHTS_ENV})."
        )
    return path


def caffemodel_metadata(path):
    digest = sha256_of(path)
    return {
        "source": "caffemodel",
        "source_file": pathlib.Path(path).name,
        "source_sha256": digest,
        "official": digest == OFFICIAL_SHA256,
    }


def _base_metadata(params):
    return {
        "network": METHOD,
        "method": METHOD,
        "num_classes": NUM_CLASSES,
        "sigma_classes": [float(s) for s in SIGMA_CLASSES],
        "sigma_unit": "Gaussian sigma in pixels (fspecial('gaussian', [27 27], sigma))",
        "input_scale": float(params.input_scale),
        "patch_orientation": "natural (row, col, RGB); official Caffe kernels loaded with kh and kw swapped",
    }


def save_park17_classifier(model, path, metadata=None, params=DEFAULT_PARAMS):
    """Write the classifier's weights with Park'17 metadata, atomically; `path` must end in .weights.h5.

    Example:
        >>> save_park17_classifier(model, "run/park17.weights.h5", {"source": "trained", "steps": 5000})
    """
    record = {**_base_metadata(params), **(metadata or {})}
    return write_weights_with_metadata(model, path, record, what="Park'17 weight")


def read_park17_metadata(path):
    """The metadata of one of our Park'17 .weights.h5 files; refuses other files with a clear message."""
    metadata = read_metadata_record(path, "Park'17 weights come from train_park17 or convert_caffemodel")
    if metadata.get("method") != METHOD:
        raise WeightsMismatchError(
            f"{path}: weights of {metadata.get('network', 'another network')!r}, not of Park et al.'s classifier"
        )
    if int(metadata.get("num_classes", NUM_CLASSES)) != NUM_CLASSES or not np.allclose(
        metadata.get("sigma_classes", SIGMA_CLASSES), SIGMA_CLASSES
    ):
        raise WeightsMismatchError(f"{path}: its σ classes {metadata.get('sigma_classes')} differ from this "
                                   f"version's {SIGMA_CLASSES.tolist()}")
    return metadata


def load_park17_classifier(weights=None, cache_dir=None, with_metadata=False, params=DEFAULT_PARAMS):
    """Park et al.'s patch classifier with weights, ready for `classify.classify_patches`.

    Args:
        weights: a .caffemodel (official or re-trained in Caffe) or one of our .weights.h5 files; None
            uses ${DMENET_PARK17_WEIGHTS}, else the official model (downloaded once into the Keras cache,
            sha256-checked).
        cache_dir: Keras cache root for the download (default $KERAS_HOME or ~/.keras).
        with_metadata: also return the metadata dict (method, σ classes, provenance, sha256 of the source).
        params: Park17Params.

    Returns:
        keras.Model, or (keras.Model, metadata) with with_metadata=True.

    Raises:
        WeightsUnavailableError: no file and no download possible (the message says where to put it).
        WeightsMismatchError: a damaged, wrong or mis-shaped file (CaffeModelError for .caffemodel).

    Example:
        >>> model = load_park17_classifier("DHDE_model.caffemodel")
    """
    path = resolve_park17_weights(weights, cache_dir)
    model = build_patch_classifier(params)
    if path.name.endswith(".h5"):
        metadata = read_park17_metadata(path)
        try:
            model.load_weights(path)
        except Exception as error:
            raise WeightsMismatchError(f"{path}: weights do not fit Park et al.'s classifier ({error})") from None
        metadata["file"] = str(path)
    else:
        set_caffe_weights(model, read_park17_blobs(path))
        metadata = {**_base_metadata(params), **caffemodel_metadata(path), "file": str(path)}
    return (model, metadata) if with_metadata else model


def convert_caffemodel(src, dst, params=DEFAULT_PARAMS):
    """Convert a .caffemodel once into our .weights.h5 (with provenance and the source's sha256).

    Example:
        >>> convert_caffemodel("DHDE_model.caffemodel", "park17_official.weights.h5")
    """
    src = pathlib.Path(src)
    if not src.is_file():
        raise WeightsUnavailableError(f"{src}: no such file")
    model = build_patch_classifier(params)
    set_caffe_weights(model, read_park17_blobs(src))
    return save_park17_classifier(model, dst, caffemodel_metadata(src), params)
