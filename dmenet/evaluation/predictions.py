"""Prediction maps from any method: a folder of PNG/NPY maps with a declared unit, or our network.

Units (what the stored value means after dividing by `scale`):
- "sigma": Gaussian σ in pixels (our .npy maps; a 16-bit σ·10 PNG with scale 10);
- "normalized": σ / σ_max (our network's native output; σ_max 7 for SYNDOF's max_coc 29);
- "official": the released DMENet checkpoint's raw output, σ = max(0, (15·v − 1) / 2);
- "score": any blur score, higher = more blurred (binary protocols only).
The binary protocols threshold the value itself (σ/σ_max for "sigma"), so any monotonic map works.
"""
import dataclasses
import json
import pathlib
import re

import numpy as np

from dmenet import image_io
from dmenet.encoding import DefocusEncoding, sigma_max_for, DEFAULT_MAX_COC
from dmenet.evaluation.datasets import DatasetError, displayed_size, problem_list

UNITS = ("sigma", "normalized", "official", "score")
PREDICTION_SUFFIXES = (".npy", *image_io.IMAGE_SUFFIXES)
PREDICTIONS_META = "predictions.json"


AUTO_SUFFIXES = ("", "_sigma")  # plain names, or infer.py's <stem>_sigma.png/.npy


def _png_unit_text(path):
    """infer.py's tEXt chunk 'dmenet:unit' = 'sigma_px = value / S' → S, else None."""
    if path.suffix.lower() != ".png":
        return None
    try:
        from PIL import Image

        with Image.open(path) as image:
            text = image.info.get("dmenet:unit", "")
    except OSError:
        return None
    match = re.fullmatch(r"sigma_px = value / ([0-9.eE+-]+)", text.strip())
    return float(match.group(1)) if match else None


@dataclasses.dataclass
class PredictionFolder:
    """Maps named `<stem><suffix>.png|.npy` (one per image) and how to read them.

    Left as None, `unit`, `scale` and `suffix` are inferred: .npy maps are σ in pixels, PNGs written
    by infer.py say their scale in a text chunk, other PNGs are read as normalized maps; names may be
    `<stem>` or infer.py's `<stem>_sigma`. A .npy beside a PNG of the same name wins (it is lossless).
    """

    folder: pathlib.Path
    unit: str | None = None
    scale: float | None = None  # None: 255 for 8-bit, 65535 for 16-bit, 1 for .npy
    suffix: str | None = None
    sigma_max: float = sigma_max_for(DEFAULT_MAX_COC)
    invert: bool = False  # binary protocols: lower value = more blurred
    resize: bool = False  # resize maps to the ground truth's size (bilinear) instead of failing
    label: str | None = None

    def __post_init__(self):
        self.folder = pathlib.Path(self.folder)
        if self.unit is not None and self.unit not in UNITS:
            raise DatasetError(f"unknown prediction unit {self.unit!r}; choose one of {', '.join(UNITS)}")
        if not self.folder.is_dir():
            raise DatasetError(f"prediction folder {self.folder} does not exist")
        if self.scale is not None and not self.scale > 0:
            raise DatasetError(f"--pred-scale must be positive, got {self.scale}")
        self.label = self.label or self.folder.name
        self._files = {}
        for path in sorted(self.folder.iterdir()):
            if path.is_file() and path.suffix.lower() in PREDICTION_SUFFIXES and not path.name.startswith("."):
                self._files.setdefault(path.stem, []).append(path)
        self.inferred = []

    def _infer_unit(self, path):
        """Settle a unit left as None from the first map actually used."""
        if self.unit is not None:
            return
        png_scale = _png_unit_text(path)
        if path.suffix.lower() == ".npy":
            self.unit = "sigma"
        elif png_scale is not None:
            self.unit = "sigma"
            if self.scale is None:
                self.scale = png_scale
        else:
            self.unit = "normalized"
        self.inferred.append(f"unit {self.unit}" + (f", scale {png_scale:g}" if png_scale else "")
                             + f" inferred from {path.name}")

    def _candidates(self, stem):
        for suffix in (self.suffix,) if self.suffix is not None else AUTO_SUFFIXES:
            paths = self._files.get(stem + suffix, [])
            if paths:
                arrays = [path for path in paths if path.suffix.lower() == ".npy"]
                return arrays or paths
        return []

    def path_for(self, stem):
        paths = self._candidates(stem)
        if len(paths) != 1:
            raise DatasetError(f"{self.folder}: expected one map for {stem}, found {len(paths)}: "
                               + ", ".join(path.name for path in paths))
        return paths[0]

    def check(self, samples, truth_size):
        """All problems at once: missing maps, ambiguous names, sizes that differ from the ground truth
        (`truth_size(sample)` -> (H, W); None skips the size check)."""
        missing, ambiguous, wrong_size = [], [], []
        for sample in samples:
            paths = self._candidates(sample.stem)
            if len(paths) == 1:
                self._infer_unit(paths[0])
            if not paths:
                missing.append(f"{sample.stem}{self.suffix or ''}.png|.npy")
            elif len(paths) > 1:
                ambiguous.append(" / ".join(path.name for path in paths))
            elif truth_size is not None and not self.resize:
                size = self._stored_size(paths[0])
                expected = truth_size(sample)
                if size != expected:
                    wrong_size.append(f"{paths[0].name} is {size[1]}x{size[0]}, ground truth {sample.truth.name} "
                                      f"is {expected[1]}x{expected[0]}")
        messages = []
        if missing:
            messages.append(problem_list(f"maps missing in {self.folder}", missing))
        if ambiguous:
            messages.append(problem_list(f"several maps for one image in {self.folder}", ambiguous))
        if wrong_size:
            messages.append(problem_list("maps whose size differs from the ground truth (--resize-predictions "
                                         "resizes them)", wrong_size))
        if messages:
            raise DatasetError("\n".join(messages))

    def _stored_size(self, path):
        if path.suffix.lower() == ".npy":
            try:
                shape = np.load(path, mmap_mode="r").shape
            except (OSError, ValueError) as error:
                raise DatasetError(f"{path}: not a readable .npy file ({error})") from error
            shape = tuple(shape[:2]) if len(shape) == 3 and shape[2] == 1 else tuple(shape)
            if len(shape) != 2:
                raise DatasetError(f"{path}: a map must be H×W, got shape {shape}")
            return shape
        return displayed_size(path)

    def read_value(self, stem, shape=None):
        """The stored map divided by its scale, float64 H×W (resized to `shape` if allowed)."""
        path = self.path_for(stem)
        self._infer_unit(path)
        if path.suffix.lower() == ".npy":
            try:
                array = np.load(path)
            except (OSError, ValueError) as error:
                raise DatasetError(f"{path}: not a readable .npy file ({error})") from error
            if array.ndim == 3 and array.shape[2] == 1:
                array = array[..., 0]
            if array.ndim != 2 or array.dtype.kind not in "fiu":
                raise DatasetError(f"{path}: a map must be a numeric H×W array, got {array.dtype} {array.shape}")
            scale = 1.0 if self.scale is None else self.scale
        else:
            try:
                array = image_io.read_mask(path)
            except image_io.ImageReadError as error:
                raise DatasetError(f"{error} (prediction maps must be grey, not colour-mapped)") from error
            scale = self.scale if self.scale is not None else float(np.iinfo(array.dtype).max)
        value = array.astype(np.float64) / scale
        if not np.all(np.isfinite(value)):
            raise DatasetError(f"{path}: map contains NaN or infinite values")
        if shape is not None and value.shape != tuple(shape):
            if not self.resize:
                raise DatasetError(f"{path}: map is {value.shape[1]}x{value.shape[0]}, ground truth {shape[1]}x{shape[0]}")
            from skimage.transform import resize

            value = resize(value, shape, order=1, mode="edge", anti_aliasing=False, preserve_range=True)
        return value

    def sigma(self, stem, shape=None):
        """σ in pixels (regression protocols)."""
        value = self.read_value(stem, shape)
        if self.unit == "sigma":
            return value
        if self.unit == "normalized":
            return value * self.sigma_max
        if self.unit == "official":
            return DefocusEncoding("official").to_sigma(value).astype(np.float64)
        raise DatasetError("a 'score' map has no σ unit; regression protocols need --pred-unit "
                           "sigma, normalized or official")

    def score(self, stem, shape=None):
        """Blur score for the binary protocols: higher = more blurred."""
        value = self.read_value(stem, shape)
        if self.unit == "sigma":
            value = value / self.sigma_max
        return -value if self.invert else value

    def describe(self):
        scale = "auto (255 for 8-bit PNG, 65535 for 16-bit PNG, 1 for .npy)" if self.scale is None else self.scale
        return {
            "predictions": str(self.folder),
            "unit": self.unit,
            "scale": scale,
            "sigma_max": self.sigma_max,
            "inverted": self.invert,
            "resized_to_ground_truth": self.resize,
            "inferred": self.inferred,
            "binary_score": {
                "sigma": f"sigma / {self.sigma_max:g}",
                "normalized": "stored value / scale",
                "official": "stored value / scale (raw network output)",
                "score": "stored value / scale",
            }.get(self.unit, "unit not yet inferred") + (" negated (--invert)" if self.invert else ""),
        }


def predict_to_folder(predictor, samples, folder, weights_description, progress=True):
    """Run our network on each sample's image and store σ (px) as float32 `<stem>.npy`.

    Maps already present are kept, so an interrupted evaluation resumes; a folder made with
    different weights is refused rather than silently mixed.
    """
    from tqdm import tqdm

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta_path = folder / PREDICTIONS_META
    meta = {"weights": weights_description, "unit": "sigma_px", "encoding": predictor.encoding.to_dict()}
    if meta_path.exists():
        previous = json.loads(meta_path.read_text())
        if previous.get("weights") != weights_description:
            raise DatasetError(
                f"{folder} holds maps from other weights ({previous.get('weights')}); "
                "choose another --out folder or delete it"
            )
    else:
        with image_io.atomic_path(meta_path) as temporary:
            temporary.write_text(json.dumps(meta, indent=2))
    todo = [sample for sample in samples if not (folder / f"{sample.stem}.npy").exists()]
    for sample in tqdm(todo, desc="predicting", unit="image", disable=not progress or not todo):
        try:
            sigma = predictor.predict_sigma(image_io.read_image(sample.image))
        except ValueError as error:  # e.g. an image too small for B
            raise DatasetError(f"{sample.image}: {error}") from error
        image_io.save_npy(folder / f"{sample.stem}.npy", np.asarray(sigma, np.float32))
    return float(predictor.encoding.sigma_max)
