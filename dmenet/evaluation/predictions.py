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
import sys

import numpy as np

from dmenet.evaluation.datasets import DatasetError, displayed_size, problem_list
from dmenet.files import images as image_io
from dmenet.kernel_cache import announce_compilation
from dmenet.units import DEFAULT_MAX_COC, DefocusEncoding, sigma_max_for

UNITS = ("sigma", "normalized", "official", "score")
PREDICTION_SUFFIXES = (".npy", *image_io.IMAGE_SUFFIXES)
PREDICTIONS_META = "predictions.json"


AUTO_SUFFIXES = ("", "_sigma")  # plain names, or infer.py's <stem>_sigma.png/.npy


def png_unit_scale(path):
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


def read_sigma_map(path):
    """σ in pixels from one map file infer.py wrote: ``NAME_sigma.npy``, or the 16-bit ``NAME_sigma.png``
    whose dmenet:unit text states its scale (each file its own)."""
    path = pathlib.Path(path)
    if path.suffix.lower() == ".npy":
        return _read_npy(path).astype(np.float64)
    scale = png_unit_scale(path)
    if scale is None:
        raise DatasetError(f"{path}: not a σ map written by infer.py (no dmenet:unit text)")
    return image_io.read_mask(path).astype(np.float64) / scale


MATCHING = ("stem", "order")
SIZE_POLICIES = ("error", "crop", "resize")


def _read_npy(path):
    try:
        array = np.load(path)
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: not a readable .npy file ({error})") from error
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim != 2 or array.dtype.kind not in "fiub":
        raise DatasetError(f"{path}: a map must be a numeric H×W array, got {array.dtype} {array.shape}")
    return array


def _stored_size(path):
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


@dataclasses.dataclass
class PredictionFolder:
    """One method's maps for a dataset, and how to read them.

    Maps pair with images by name (`<stem><suffix>.png|.npy`; with suffix None, `<stem>` or infer.py's
    `<stem>_sigma`) or, with match="order", by sorted position (the original DMENet scripts saved
    test outputs as 0000.png, 0001.png, ... in the sorted order of the ground truth). A .npy beside
    a PNG of the same name wins (it is lossless). Left as None, `unit` and `scale` are inferred:
    .npy maps are σ in pixels, infer.py's PNGs state their scale, other PNGs are normalized maps.
    Maps of another size than the ground truth are an error, or both are cut to their common
    top-left region ("crop", what the original does for maps of a /16-cropped input), or the map is
    resized bilinearly ("resize").
    """

    folder: pathlib.Path
    unit: str | None = None
    scale: float | None = None  # None: 255 for 8-bit, 65535 for 16-bit, 1 for .npy
    suffix: str | None = None
    sigma_max: float = sigma_max_for(DEFAULT_MAX_COC)
    invert: bool = False  # binary protocols: lower value = more blurred
    size_policy: str = "error"
    match: str = "stem"
    label: str | None = None
    method: str | None = None  # the registered method that wrote the maps, when known

    def __post_init__(self):
        self.folder = pathlib.Path(self.folder)
        if self.unit is not None and self.unit not in UNITS:
            raise DatasetError(f"unknown prediction unit {self.unit!r}; choose one of {', '.join(UNITS)}")
        if self.size_policy not in SIZE_POLICIES:
            raise DatasetError(f"unknown size policy {self.size_policy!r}; choose one of {', '.join(SIZE_POLICIES)}")
        if self.match not in MATCHING:
            raise DatasetError(f"unknown matching {self.match!r}; choose one of {', '.join(MATCHING)}")
        if not self.folder.is_dir():
            raise DatasetError(f"prediction folder {self.folder} does not exist")
        if self.scale is not None and not self.scale > 0:
            raise DatasetError(f"--pred-scale must be positive, got {self.scale}")
        self._scale_given = self.scale is not None
        self.label = self.label or self.folder.name
        self._files = {}
        for path in sorted(self.folder.iterdir()):
            if path.is_file() and path.suffix.lower() in PREDICTION_SUFFIXES and not path.name.startswith("."):
                self._files.setdefault(path.stem, []).append(path)
        self._by_order = None
        self.inferred = []
        self.adjusted_sizes = set()  # stems whose map was cropped or resized

    def _infer_unit(self, path):
        """Settle a unit left as None from the first map actually used."""
        if self.unit is not None:
            return
        png_scale = png_unit_scale(path)
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

    @staticmethod
    def _prefer_npy(paths):
        arrays = [path for path in paths if path.suffix.lower() == ".npy"]
        return arrays or paths

    def _candidates(self, stem):
        if self._by_order is not None:
            return [self._by_order[stem]] if stem in self._by_order else []
        for suffix in (self.suffix,) if self.suffix is not None else AUTO_SUFFIXES:
            paths = self._files.get(stem + suffix, [])
            if paths:
                return self._prefer_npy(paths)
        return []

    def _bind_by_order(self, samples):
        maps = []
        for name, paths in sorted(self._files.items()):
            if self.suffix is None or name.endswith(self.suffix):
                maps.append(self._prefer_npy(paths))
        ambiguous = [" / ".join(path.name for path in paths) for paths in maps if len(paths) > 1]
        if ambiguous:
            raise DatasetError(problem_list(f"several maps with one name in {self.folder}", ambiguous))
        if len(maps) != len(samples):
            raise DatasetError(f"{self.folder} holds {len(maps)} maps but the dataset has {len(samples)} images; "
                               "matching by sorted order needs exactly one map per image")
        ordered = sorted(samples, key=lambda sample: sample.truth.name)
        self._by_order = {sample.stem: paths[0] for sample, paths in zip(ordered, maps)}

    def path_for(self, stem):
        paths = self._candidates(stem)
        if len(paths) != 1:
            raise DatasetError(f"{self.folder}: expected one map for {stem}, found {len(paths)}"
                               + (": " + ", ".join(path.name for path in paths) if paths else ""))
        return paths[0]

    def check(self, samples, truth_size):
        """All problems at once: missing maps, ambiguous names, sizes that differ from the ground truth
        (`truth_size(sample)` -> (H, W); None skips the size check)."""
        if self.match == "order":
            self._bind_by_order(samples)
        missing, ambiguous, wrong_size = [], [], []
        for sample in samples:
            paths = self._candidates(sample.stem)
            if not paths:
                missing.append(f"{sample.stem}{self.suffix or ''}.png|.npy")
            elif len(paths) > 1:
                ambiguous.append(" / ".join(path.name for path in paths))
            else:
                self._infer_unit(paths[0])
                if truth_size is not None and self.size_policy == "error":
                    size, expected = _stored_size(paths[0]), truth_size(sample)
                    if size != expected:
                        wrong_size.append(f"{paths[0].name} is {size[1]}x{size[0]}, ground truth "
                                          f"{sample.truth.name} is {expected[1]}x{expected[0]}")
        messages = []
        if missing:
            hint = ("" if self._files or not samples else " (the folder holds no .png/.npy maps)")
            if self.match == "stem" and self._files and len(missing) == len(samples):
                hint = (" (no map name matches an image name; maps saved in sorted order, like the "
                        "original's 0000.png, pair with --match-by order)")
            messages.append(problem_list(f"maps missing in {self.folder}{hint}", missing))
        if ambiguous:
            messages.append(problem_list(f"several maps for one image in {self.folder}", ambiguous))
        if wrong_size:
            messages.append(problem_list("maps whose size differs from the ground truth (--size-mismatch crop "
                                         "compares the common top-left region, resize rescales the map)", wrong_size))
        if messages:
            raise DatasetError("\n".join(messages))

    def read_value(self, stem):
        """The stored map divided by its scale, float64 H×W."""
        return self.read_value_at(self.path_for(stem))

    def read_value_at(self, path):
        """One map file's stored values divided by its scale, float64 H×W (read_value for a known path)."""
        path = pathlib.Path(path)
        self._infer_unit(path)
        if path.suffix.lower() == ".npy":
            array = _read_npy(path)
            scale = 1.0 if self.scale is None else self.scale
        else:
            try:
                array = image_io.read_mask(path)
            except image_io.ImageReadError as error:
                raise DatasetError(f"{error} (prediction maps must be grey, not colour-mapped)") from error
            # infer.py's σ PNGs each state their scale (smaller where σ exceeds 65.5 px): unless a scale
            # was given, each is read with its own, also in a folder whose unit came from a .npy.
            stated = png_unit_scale(path) if self.unit == "sigma" and not self._scale_given else None
            scale = stated or (self.scale if self.scale is not None else float(np.iinfo(array.dtype).max))
        value = array.astype(np.float64) / scale
        if not np.all(np.isfinite(value)):
            raise DatasetError(f"{path}: map contains NaN or infinite values")
        return value

    def align(self, stem, value, truth):
        """(map, ground truth) of equal shape under the size policy."""
        if value.shape == truth.shape:
            return value, truth
        if self.size_policy == "error":
            raise DatasetError(f"{self.path_for(stem)}: map is {value.shape[1]}x{value.shape[0]}, ground truth "
                               f"{truth.shape[1]}x{truth.shape[0]} (see --size-mismatch)")
        self.adjusted_sizes.add(stem)
        if self.size_policy == "crop":
            height, width = min(value.shape[0], truth.shape[0]), min(value.shape[1], truth.shape[1])
            return value[:height, :width], truth[:height, :width]
        from skimage.transform import resize

        return resize(value, truth.shape, order=1, mode="edge", anti_aliasing=False, preserve_range=True), truth

    def to_sigma(self, value):
        """Stored value / scale → σ in pixels (regression protocols)."""
        if self.unit == "sigma":
            return value
        if self.unit == "normalized":
            return value * self.sigma_max
        if self.unit == "official":
            return DefocusEncoding("official").to_sigma(value).astype(np.float64)
        raise DatasetError("a 'score' map has no σ unit; regression protocols need --pred-unit "
                           "sigma, normalized or official")

    def to_score(self, value):
        """Stored value / scale → blur score for the binary protocols (higher = more blurred)."""
        if self.unit == "sigma":
            value = value / self.sigma_max
        return -value if self.invert else value

    def score_to_sigma(self, score):
        """The σ in pixels that a binary score (e.g. the best threshold) stands for; None for 'score' maps."""
        if self.unit not in ("sigma", "normalized", "official") or score is None or not np.isfinite(score):
            return None
        value = -score if self.invert else score
        if self.unit == "sigma":
            value = value * self.sigma_max
        return float(self.to_sigma(np.float64(value)))

    def sigma(self, stem):
        return self.to_sigma(self.read_value(stem))

    def sigma_at(self, path):
        """σ in pixels of one map file, read as this folder reads its maps."""
        return self.to_sigma(self.read_value_at(path))

    @classmethod
    def from_description(cls, description, folder=None):
        """The reader that `describe()` wrote down (e.g. applications.json's "sigma_maps"), so that a map
        is read again with the unit and scale it was read with then.

        Args:
            description: a dict from `describe()`.
            folder: where the maps are now (default: the described folder).

        Returns:
            A PredictionFolder; DatasetError when the folder no longer exists.

        Example:
            >>> maps = PredictionFolder.from_description(summary["sigma_maps"])
            >>> sigma = maps.sigma_at(record["sigma_map"])
        """
        scale = description.get("scale")
        # Descriptions written before "scale_given": a unit left to inference means the scale was too.
        given = description.get("scale_given", not description.get("inferred"))
        return cls(folder or description["predictions"], unit=description.get("unit"),
                   scale=float(scale) if given and isinstance(scale, (int, float)) else None,
                   sigma_max=float(description.get("sigma_max", sigma_max_for(DEFAULT_MAX_COC))),
                   invert=bool(description.get("inverted", False)), method=description.get("method"))

    def score(self, stem):
        return self.to_score(self.read_value(stem))

    def scored_pair(self, stem, truth):
        """(score map, mask) aligned under the size policy."""
        return self.align(stem, self.score(stem), truth)

    def sigma_pair(self, stem, truth):
        """(σ map, ground truth) aligned under the size policy."""
        return self.align(stem, self.sigma(stem), truth)

    def describe(self):
        scale = "auto (255 for 8-bit PNG, 65535 for 16-bit PNG, 1 for .npy)" if self.scale is None else self.scale
        return {
            "predictions": str(self.folder),
            "method": self.method,
            "unit": self.unit,
            "scale": scale,
            "scale_given": self._scale_given,  # False: each infer.py PNG is read with the scale its text states
            "sigma_max": self.sigma_max,
            "inverted": self.invert,
            "matching": {"stem": "by file name", "order": "by sorted position (i-th map <-> i-th ground truth)"}[self.match],
            "size_mismatch": {"error": "refused", "crop": "common top-left region of map and ground truth",
                              "resize": "map resized bilinearly to the ground truth"}[self.size_policy],
            "size_adjusted_images": len(self.adjusted_sizes),
            "inferred": self.inferred,
            "binary_score": {
                "sigma": f"sigma / {self.sigma_max:g}",
                "normalized": "stored value / scale",
                "official": "stored value / scale (raw network output)",
                "score": "stored value / scale",
            }.get(self.unit, "unit not yet inferred") + (" negated (--invert)" if self.invert else ""),
        }


SECONDS_FILE = "seconds.json"


def read_seconds(folder):
    """{stem: {"wall": s, "cpu": s}} of the maps ``predict_to_folder`` computed in ``folder`` ({} if none).

    A photo whose time included compiling the method's kernels also has ``"compiled_kernels": true``.
    """
    path = pathlib.Path(folder) / SECONDS_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def predict_to_folder(predictor, samples, folder, weights_description, progress=True, desc="predicting"):
    """Run a method on each sample's image and store σ (px) as float32 `<stem>.npy`.

    Maps already present are kept, so an interrupted evaluation resumes; a folder made with
    different weights is refused rather than silently mixed. The seconds each map took (wall and
    process CPU time of ``predict_sigma`` alone) go to ``seconds.json`` beside them, so a resumed run
    still knows them.

    Args:
        predictor: any object with ``predict_sigma(image) -> σ`` and an ``encoding`` (``load_predictor``).
        samples: the dataset's samples (stem and image path).
        folder: where the maps go.
        weights_description: what made the maps; a folder holding maps from anything else is refused.
        progress: show a progress bar, named ``desc``, with the photo being processed.

    Returns:
        The σ that a binary score of 1 stands for (``predictor.encoding.sigma_max``).
    """
    import time

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
    seconds = read_seconds(folder)
    todo = [sample for sample in samples if not (folder / f"{sample.stem}.npy").exists()]
    bar = tqdm(todo, desc=desc, unit="image", disable=not progress or not todo)
    def note(line):
        tqdm.write(f"note: {line}", file=sys.stderr)

    with announce_compilation(note, enabled=getattr(predictor, "runs_compiled_kernels", False)) as watch:
        for sample in bar:
            bar.set_postfix_str(sample.stem[-30:])
            image = image_io.read_image(sample.image)
            wall, cpu, compiled_before = time.perf_counter(), time.process_time(), watch.compiled
            try:
                sigma = predictor.predict_sigma(image)
            except ValueError as error:  # e.g. an image too small for B
                raise DatasetError(f"{sample.image}: {error}") from error
            seconds[sample.stem] = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
            if watch.compiled and not compiled_before:
                seconds[sample.stem]["compiled_kernels"] = True  # a fresh install's one-off: not the method's speed
            image_io.save_npy(folder / f"{sample.stem}.npy", np.asarray(sigma, np.float32))
            with image_io.atomic_path(folder / SECONDS_FILE) as temporary:
                temporary.write_text(json.dumps(seconds, indent=1))
    return float(predictor.encoding.sigma_max)
