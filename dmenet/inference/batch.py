"""Run B over many photos and write every output a user may want, file by file, never all-or-nothing.

A file that cannot be read is reported (one line naming it and the fix) and skipped; the summary
(summary.json, rewritten after every photo so that an interrupted run leaves a true one) lists what
was written, what failed and why, and the unit of every stored map.
"""
import dataclasses
import glob
import json
import pathlib
import sys
import time

import numpy as np

from dmenet.files.figures import save_side_by_side, save_sigma_colormap
from dmenet.files.images import (
    IMAGE_SUFFIXES,
    ImageReadError,
    atomic_path,
    check_image_header,
    is_image_name,
    list_images,
    read_image,
    save_npy,
    write_png,
)
from dmenet.inference.tiling import InferenceInterrupted
from dmenet.kernel_cache import announce_compilation

DEFAULT_PNG_SCALE = 1000.0  # σ · 1000 in uint16: 0.001 px steps up to 65.5 px
# When σ does not fit at 1000 (photos shrunk with --max-side), the largest of these that fits.
FALLBACK_PNG_SCALES = (500.0, 200.0, 100.0, 50.0, 20.0, 10.0, 5.0, 2.0, 1.0)
UINT16_MAX = 65535
# What run_on_sigma_maps writes instead of summary.json: the maps' folder (often the output folder
# too) keeps the summary.json of the run that made them.
MAPS_SUMMARY = "applications.json"


@dataclasses.dataclass
class OutputOptions:
    png_scale: float | None = None  # σ·scale in the 16-bit PNG; None = 1000, or less when σ needs it
    write_npy: bool = False
    write_colormap: bool = True
    mask_threshold: float | str | None = None  # σ in pixels (pixels above it are "blurred"), or "otsu" per photo
    write_figure: bool = False
    vmax: float | None = None  # colour scale top in σ px; None = the largest σ the model can express
    applications: object = None  # dmenet.applications.outputs.ApplicationOptions: all-in-focus, magnified, depth


class OutputError(ValueError):
    """One output could not be written; the others were. The message names the file and the fix."""

    def __init__(self, message, files):
        super().__init__(message)
        self.files = files


def collect_inputs(arguments):
    """Files, folders and glob patterns → (paths, problems, skipped).

    paths: unique existing inputs in order. problems: one line per argument that gave nothing (a
    missing path, an empty folder). skipped: one line per file in a folder or glob match that is not
    an image by name (hidden files are left out silently). A file named explicitly has its header
    read at once: one that cannot be an image (a text file) is a problem line now, before any model
    loads.
    """
    paths, problems, skipped, seen = [], [], [], set()
    for argument in arguments:
        candidate = pathlib.Path(argument)
        if candidate.is_dir():
            entries = sorted(p for p in candidate.iterdir() if p.is_file() and not p.name.startswith("."))
            found = list_images(candidate)
            skipped += [f"{p}: not an image ({p.suffix or 'no suffix'}), skipped" for p in entries if not is_image_name(p)]
            if not found:
                problems.append(f"{argument}: folder holds no images ({', '.join(IMAGE_SUFFIXES)}); pass another folder or the files")
        elif candidate.is_file():
            try:
                check_image_header(candidate)
                found = [candidate]
            except ImageReadError as error:
                problems.append(str(error))
                found = []
        else:
            matches = [pathlib.Path(p) for p in sorted(glob.glob(argument)) if pathlib.Path(p).is_file()]
            found = [p for p in matches if is_image_name(p)]
            skipped += [f"{p}: not an image ({p.suffix or 'no suffix'}), skipped" for p in matches
                        if not is_image_name(p) and not p.name.startswith(".")]
            if not matches:
                problems.append(f"{argument}: no such file, folder or matching pattern; check the path")
        for path in found:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                paths.append(path)
    return paths, problems, skipped


def _output_stems(paths):
    """Output name per input: its stem, disambiguated with the parent folder when stems collide."""
    counts = {}
    for path in paths:
        counts[path.stem] = counts.get(path.stem, 0) + 1
    return [f"{p.parent.name}_{p.stem}" if counts[p.stem] > 1 else p.stem for p in paths]


def fitting_png_scale(sigma_max):
    """The largest usual scale at which σ up to `sigma_max` fits 16 bits (1000 when it can)."""
    for scale in (DEFAULT_PNG_SCALE, *FALLBACK_PNG_SCALES):
        if sigma_max * scale <= UINT16_MAX:
            return scale
    return UINT16_MAX / sigma_max


def write_outputs(output_dir, stem, image, prediction, encoding, options, layer_progress=None, record=None):
    """All requested files for one photo → (file names, notes for the user, PNG scale).

    `record` (a dict), when given, receives what summary.json lists for the photo beyond its σ
    statistics (the mask's threshold, the applications' timings). `layer_progress(description)`
    gives a progress callback for the applications' layers (or None).

    The float maps come first, so nothing computed is lost if a later file fails. Raises
    OutputError (carrying the files that were written) when --png-scale was given and σ does not
    fit 16 bits at it.
    """
    sigma = prediction.sigma
    written, notes = [], []
    if options.write_npy:
        save_npy(output_dir / f"{stem}_sigma.npy", sigma.astype(np.float32))
        written.append(f"{stem}_sigma.npy")
    sigma_max = float(sigma.max())
    png_scale = options.png_scale if options.png_scale is not None else fitting_png_scale(sigma_max)
    png_fits = sigma_max * png_scale <= UINT16_MAX
    if png_fits:
        stored = np.round(sigma.astype(np.float64) * png_scale).astype(np.uint16)
        write_png(output_dir / f"{stem}_sigma.png", stored,
                  text={"dmenet:unit": f"sigma_px = value / {png_scale:g}", "dmenet:encoding": encoding.description})
        written.append(f"{stem}_sigma.png")
        if png_scale != DEFAULT_PNG_SCALE and options.png_scale is None:
            notes.append(f"{output_dir / stem}_sigma.png: σ reaches {sigma_max:.1f} px, so it stores σ × {png_scale:g} "
                         f"(not × {DEFAULT_PNG_SCALE:g}); the file's dmenet:unit text and summary.json say so")
    vmax = options.vmax if options.vmax is not None else prediction.sigma_limit
    if options.write_colormap:
        save_sigma_colormap(output_dir / f"{stem}_defocus.png", sigma, vmax=vmax)
        written.append(f"{stem}_defocus.png")
    more, extras, more_notes, details = write_applications_and_mask(output_dir, stem, image, sigma, options, layer_progress)
    if record is not None:
        record.update(details)
    written += more
    notes += more_notes
    if options.write_figure:
        save_side_by_side(output_dir / f"{stem}_figure.png", image, sigma, extras.pop("mask", None), vmax=vmax, title=stem, extras=extras)
        written.append(f"{stem}_figure.png")
    if not png_fits:
        raise OutputError(
            f"{output_dir / stem}_sigma.png not written: σ up to {sigma_max:.1f} px does not fit 16 bits at "
            f"--png-scale {png_scale:g} (the other files were written); rerun with --png-scale "
            f"{fitting_png_scale(sigma_max):g} or leave --png-scale out to choose it automatically",
            written,
        )
    return written, notes, png_scale


def write_applications_and_mask(output_dir, stem, image, sigma, options, layer_progress=None):
    """NAME_mask.png (--mask-threshold) and the applications' files → (files, figure panels with
    the mask under "mask", notes, record). Photo and map may differ in size only as the applications
    allow (a map smaller than the photo: its top-left region); the library's warnings become notes."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files, panels, notes, record = _write_applications_and_mask(output_dir, stem, image, sigma, options, layer_progress)
    notes += list(dict.fromkeys(f"{output_dir / stem}: {warning.message}" for warning in caught))
    return files, panels, notes, record


def _write_applications_and_mask(output_dir, stem, image, sigma, options, layer_progress):
    files, panels, notes, record = [], {}, [], {}
    if options.mask_threshold is not None:
        from dmenet.applications.masks import blur_mask

        mask, used = blur_mask(sigma, options.mask_threshold)
        write_png(output_dir / f"{stem}_mask.png", mask.astype(np.uint8) * 255, text={"dmenet:unit": f"255 = sigma_px > {used:g}"})
        files.append(f"{stem}_mask.png")
        panels["mask"] = mask
        record["mask_threshold_px"] = used
    if options.applications is not None and options.applications.any:
        from dmenet.applications.outputs import write_applications

        more, extras, more_notes, more_record = write_applications(output_dir, stem, image, sigma, options.applications,
                                                                   options.write_npy, layer_progress)
        files += more
        panels.update(extras)
        notes += more_notes
        record.update(more_record)
    return files, panels, notes, record


def _mask_rule(options):
    if options.mask_threshold is None:
        return None
    if isinstance(options.mask_threshold, str):
        return f"255 where sigma_px > each image's Otsu threshold (its mask_threshold_px; {options.mask_threshold})"
    return f"255 where sigma_px > {options.mask_threshold:g}"


def _applications_summary(options):
    return options.applications.describe() if options.applications is not None else {}


def _summary(predictor, options, results, failures, interrupted=False, compare_with=None):
    scales = {r["sigma_png_scale"] for r in results if r.get("sigma_png_scale")}
    if options.png_scale is not None:
        unit = f"sigma_px = uint16 value / {options.png_scale:g}"
    elif scales <= {DEFAULT_PNG_SCALE}:
        unit = f"sigma_px = uint16 value / {DEFAULT_PNG_SCALE:g}"
    else:
        unit = f"sigma_px = uint16 value / sigma_png_scale of each image ({DEFAULT_PNG_SCALE:g} unless σ exceeds 65.5 px)"
    return {
        "method": predictor.method,
        "compared_with": None if compare_with is None else {
            "method": compare_with.method, "encoding": compare_with.encoding.to_dict(),
            "files": f"NAME_{compare_with.method}_* and NAME_compare.png"},
        "encoding": predictor.encoding.to_dict(),
        "encoding_description": predictor.encoding.description,
        "precision": predictor.precision,
        "precision_reason": predictor.precision_reason,
        "xla": predictor.xla,
        "sigma_png_unit": unit,
        "mask_rule": _mask_rule(options),
        "applications": _applications_summary(options),
        "max_side": predictor.max_side,
        "tile": predictor.tile,
        "margin": predictor.margin,
        "interrupted": interrupted,
        "images": results,
        "failures": failures,
    }


def _failure_message(path, error):
    """One line naming the file and a way forward, for errors that do not carry one already."""
    if isinstance(error, (ImageReadError, OutputError)):
        return str(error)
    if isinstance(error, MemoryError) or "ResourceExhausted" in type(error).__name__:
        return f"{path}: out of memory; rerun with a smaller --tile (e.g. 512) or --max-side"
    if isinstance(error, OSError):
        return f"{path}: could not write its outputs ({error.strerror or error}); choose another --output folder"
    return f"{path}: {error}"


def run_inference(paths, predictor, output_dir, options, progress=True, stop=None, log=None, compare_with=None):
    """Predict and write every photo; returns the summary dict (also saved as summary.json).

    Args:
        paths: photo paths (see collect_inputs).
        predictor: a DefocusPredictor or Park17Predictor.
        compare_with: a second predictor (the other method): its outputs are written too, named
            ``NAME_<method>_*``, with ``NAME_compare.png`` showing both maps beside the photo.
        output_dir: folder for the outputs; created if needed.
        options: OutputOptions.
        progress: show progress bars (per photo, and per tile for large photos, with time left).
        stop: callable; when it returns True the run stops between tiles and the summary says so.
        log: where one-line notes and failures go as they happen (default: stderr).

    Returns:
        The summary: units, precision, per-image statistics and files, failures.

    Example:
        >>> summary = run_inference(paths, DefocusPredictor.from_weights(w), "out", OutputOptions())
    """
    log = log or _write_line
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results, failures, interrupted = [], [], False
    jobs = list(zip(paths, _output_stems(paths)))
    _write_summary(output_dir, _summary(predictor, options, results, failures, compare_with=compare_with))  # true even if stopped at once
    bar = _photos_bar(jobs, "defocus maps", progress)
    stage_bar = StageProgress(predictor.method)
    layer_bars = LayerBars(progress)
    runs_kernels = any(getattr(each, "runs_compiled_kernels", False) for each in (predictor, compare_with))
    with announce_compilation(lambda line: log(f"note: {line}"), enabled=runs_kernels) as watch:
        for path, stem in bar:
            bar.set_postfix_str(path.name[-30:], refresh=False)  # drawn with the next update, not twice
            started, compiled_before = time.perf_counter(), watch.compiled
            tile_bar = None

            def tile_progress(done, total, stage=None, path=path):
                nonlocal tile_bar
                if total < 2 or not progress:
                    return
                if stage is not None:
                    stage_bar.show(path, done, total, stage)
                    return
                if tile_bar is None:
                    from tqdm import tqdm

                    # A tile takes seconds: draw at every update (tqdm's default skips redraws within 0.1 s).
                    tile_bar = tqdm(total=total, desc=f"tiles of {path.name[-24:]}", unit="tile", leave=False, mininterval=0,
                                    miniters=1, file=sys.stderr, bar_format="{l_bar}{bar}| {n}/{total} tiles [{elapsed}, {remaining} left]")
                tile_bar.update(done - tile_bar.n)

            try:
                image = read_image(path)
                stage_bar.start(image.shape[0] * image.shape[1])
                prediction = predictor.predict(image, progress=tile_progress, stop=stop)
                record = {}
                files, notes, png_scale = write_outputs(output_dir, stem, image, prediction, predictor.encoding, options,
                                                        layer_bars.factory(path), record)
                if compare_with is not None:
                    files, notes = _write_comparison(output_dir, stem, image, prediction, predictor, compare_with, options,
                                                     files, notes, stop)
            except InferenceInterrupted:
                interrupted = True
                break
            except Exception as error:
                if not isinstance(error, (ValueError, OSError, MemoryError)) and "ResourceExhausted" not in type(error).__name__:
                    raise  # a bug, not a bad input: let it show
                failures.append({"input": str(path), "error": _failure_message(path, error), "files": getattr(error, "files", [])})
                log(f"failed: {failures[-1]['error']}")
            else:
                for note in notes:
                    log(f"note: {note}")
                sigma = prediction.sigma
                results.append({
                    "input": str(path),
                    "stem": stem,
                    "size": [int(image.shape[1]), int(image.shape[0])],
                    "files": files,
                    "sigma_png_scale": png_scale,
                    "sigma_px": _sigma_statistics(sigma),
                    "inference_scale": prediction.scale,
                    **({"tiles": prediction.tiles} if predictor.tile is not None else
                       {"stage_seconds": {k: round(v, 3) for k, v in getattr(predictor, "last_stage_seconds", {}).items()}}),
                    "seconds": round(time.perf_counter() - started, 3),
                    # a fresh install's one-off, not the method's speed:
                    **({"compiled_kernels": True} if watch.compiled and not compiled_before else {}),
                    **record,
                })
            finally:
                if tile_bar is not None:
                    tile_bar.close()
                stage_bar.close()
                layer_bars.close()
            _write_summary(output_dir, _summary(predictor, options, results, failures, compare_with=compare_with))
    bar.close()
    summary = _summary(predictor, options, results, failures, interrupted, compare_with)
    _write_summary(output_dir, summary)
    return summary


def _write_line(line):
    """One line on stderr, above any progress bar that is showing."""
    tqdm = sys.modules.get("tqdm")  # imported only once a bar was made (its import is 0.05–0.1 s of a small photo's run)
    if tqdm is not None:
        tqdm.tqdm.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


class _NoBar:
    """What the photos loop iterates when no bar is shown (one photo, or no progress asked for)."""

    def __init__(self, jobs):
        self.jobs = jobs

    def __iter__(self):
        return iter(self.jobs)

    def set_postfix_str(self, *args, **kwargs):
        pass

    def close(self):
        pass


def _photos_bar(jobs, description, progress):
    """A tqdm bar over the photos when there are two or more and progress is shown."""
    if not progress or len(jobs) < 2:
        return _NoBar(jobs)
    from tqdm import tqdm

    return tqdm(jobs, desc=description, unit="image", file=sys.stderr)


def _sigma_statistics(sigma):
    """Mean, median and maximum of a σ map (the median without ``np.median``, which imports ``numpy.ma``: 0.01–0.02 s)."""
    flat = np.ravel(sigma)
    middle = flat.size // 2
    if flat.size % 2:
        median = np.partition(flat, middle)[middle]
    else:
        median = np.partition(flat, (middle - 1, middle))[[middle - 1, middle]].mean()  # as np.median averages the two
    return {"mean": float(flat.mean()), "median": float(median), "max": float(flat.max())}


class StageProgress:
    """A progress line for methods that run in named stages (Park'17), with a time estimate it can stand by.

    Stages take very different times (the propagation most of it), so counting them would promise a
    false finish; the time left is instead taken from the previous photo's stage times, scaled by the
    pixel count, and is left out for the first photo. The line appears at the first stage that starts
    `show_after` seconds or more into a photo: a photo done sooner (Zhuo & Sim on a small one) shows
    none and does not pay for importing tqdm.
    """

    def __init__(self, method, show_after=0.5):
        self.method = method
        self.show_after = show_after
        self.bar = None
        self.previous = None  # (pixels, {stage: seconds}) of the last photo that finished
        self.start(0)

    def start(self, pixels):
        self.pixels, self.seconds, self.stage, self.stage_started = pixels, {}, None, None
        self.photo_started = time.perf_counter()

    def show(self, path, done, total, stage):
        """Stage `stage` starts as `done` of `total` have finished (done == total: the photo is done)."""
        now = time.perf_counter()
        if self.stage is not None:
            self.seconds[self.stage] = now - self.stage_started
        self.stage, self.stage_started = (stage if done < total else None), now
        if done >= total:
            self.previous = (self.pixels, dict(self.seconds))
        if self.bar is None and (done >= total or now - self.photo_started < self.show_after):
            return
        if self.bar is None:
            from tqdm import tqdm

            # drawn first by the postfix below (a delay instead of a draw now), its clock from the photo's start
            self.bar = tqdm(total=total, initial=done, desc=f"{self.method} on {path.name[-24:]}", leave=False,
                            file=sys.stderr, bar_format="{desc}: {n}/{total} stages{postfix} [{elapsed}]", delay=1e9)
            self.bar.start_t -= now - self.photo_started
        self.bar.n = done
        self.bar.set_postfix_str(self._describe(done, total))  # one redraw per stage

    def _describe(self, done, total):
        if done >= total:
            return "done"
        text = self.stage.replace("_", " ")
        if self.previous is not None:
            pixels, seconds = self.previous
            left = sum(s for name, s in seconds.items() if name not in self.seconds) * self.pixels / max(pixels, 1)
            text += f", about {left:.0f} s left" if left >= 1 else ", under a second left"
        return text

    def close(self):
        if self.bar is not None:
            self.bar.close()
        self.bar = None


def _write_comparison(output_dir, stem, image, prediction, predictor, other, options, files, notes, stop):
    """The other method's outputs for the same photo, and a figure of both maps; (files, notes)."""
    from dmenet.files.figures import save_method_comparison

    second = other.predict(image, stop=stop)
    # The applications run on the main method's map only: the comparison is of the maps.
    more, more_notes, _ = write_outputs(output_dir, f"{stem}_{other.method}", image, second, other.encoding,
                                           dataclasses.replace(options, applications=None))
    save_method_comparison(
        output_dir / f"{stem}_compare.png", image, {predictor.method: prediction.sigma, other.method: second.sigma},
        limits={predictor.method: prediction.sigma_limit, other.method: second.sigma_limit}, title=stem)
    return files + more + [f"{stem}_compare.png"], notes + more_notes


class LayerBars:
    """tqdm bars for the applications' layers (the deconvolution's, the magnification's), one per
    application of the current photo, removed when the photo is done."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.bars = []

    def factory(self, path):
        """callable(description) → callback(done_layers, total_layers) for this photo, or None."""
        if not self.enabled:
            return None

        def for_application(description):
            from tqdm import tqdm

            bar = None

            def update(done, total):
                nonlocal bar
                if bar is None:
                    bar = tqdm(total=total, desc=f"{description} of {path.name[-24:]}", unit="layer", leave=False, file=sys.stderr)
                    self.bars.append(bar)
                bar.update(done - bar.n)

            return update

        return for_application

    def close(self):
        for bar in self.bars:
            bar.close()
        self.bars = []


def match_sigma_maps(paths, maps, require_stated_unit=False):
    """Pair each photo with its map in a `PredictionFolder` by name (NAME_sigma.npy / NAME_sigma.png,
    or NAME.npy / NAME.png; .npy first) → (pairs of (photo, stem of the outputs), problems).
    With `require_stated_unit`, a PNG map must carry infer.py's unit text (a .npy is σ in px)."""
    from dmenet.datasets import DatasetError
    from dmenet.evaluation.predictions import png_unit_scale

    pairs, problems = [], []
    for path, stem in zip(paths, _output_stems(paths)):
        try:
            found = maps.path_for(path.stem)
        except DatasetError as error:
            problems.append({"input": str(path), "error": f"{path}: no σ map for it ({error})", "files": []})
            continue
        if require_stated_unit and found.suffix.lower() != ".npy" and png_unit_scale(found) is None:
            problems.append({"input": str(path), "files": [],
                             "error": f"{found}: states no unit (not one of infer.py's σ maps); say what its values are with --sigma-unit"})
            continue
        pairs.append((path, stem))
    return pairs, problems


def run_on_sigma_maps(paths, maps, output_dir, options, progress=True, log=None, require_stated_unit=False):
    """The masks and applications for photos whose σ maps were computed earlier: no network runs.

    Args:
        paths: photo paths (see collect_inputs).
        maps: a ``dmenet.evaluation.predictions.PredictionFolder`` holding the maps and their unit.
        output_dir: folder for the outputs; created if needed.
        options: OutputOptions (mask_threshold, applications, write_npy, write_figure, vmax).
        progress: show progress bars.
        log: where one-line notes and failures go (default: stderr).
        require_stated_unit: refuse PNG maps without infer.py's unit text (their unit was not given).

    Returns:
        The summary (also saved as applications.json): the maps' unit, the applications' parameters,
        per-image files, failures.

    Examples:
        >>> run_on_sigma_maps(paths, PredictionFolder("outputs/infer"), "outputs/apps", OutputOptions(applications=...))
    """
    from dmenet.applications.inputs import as_sigma

    log = log or _write_line
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    jobs, failures = match_sigma_maps(paths, maps, require_stated_unit)
    for failure in failures:
        log(f"failed: {failure['error']}")
    results = []

    def summary():
        return {
            "method": None,
            "sigma_maps": maps.describe(),
            "mask_rule": _mask_rule(options),
            "applications": _applications_summary(options),
            "images": results,
            "failures": failures,
        }

    _write_summary(output_dir, summary(), MAPS_SUMMARY)
    bar = _photos_bar(jobs, "photos", progress)
    layer_bars = LayerBars(progress)
    for path, stem in bar:
        started = time.perf_counter()
        try:
            image = read_image(path)
            sigma = as_sigma(maps.sigma(path.stem))
            files, extras, notes, record = write_applications_and_mask(output_dir, stem, image, sigma, options, layer_bars.factory(path))
            if options.write_figure:
                shown = image[: sigma.shape[0], : sigma.shape[1]]  # a smaller map covers the photo's top-left
                save_side_by_side(output_dir / f"{stem}_figure.png", shown, sigma, extras.pop("mask", None), vmax=options.vmax,
                                  title=stem, extras=extras)
                files.append(f"{stem}_figure.png")
        except (ValueError, OSError, MemoryError) as error:
            failures.append({"input": str(path), "error": _failure_message(path, error), "files": []})
            log(f"failed: {failures[-1]['error']}")
        else:
            for note in notes:
                log(f"note: {note}")
            results.append({
                "input": str(path),
                "stem": stem,
                "sigma_map": str(maps.path_for(path.stem)),
                "size": [int(image.shape[1]), int(image.shape[0])],
                "files": files,
                "sigma_px": _sigma_statistics(sigma),
                "seconds": round(time.perf_counter() - started, 3),
                **record,
            })
        finally:
            layer_bars.close()
        _write_summary(output_dir, summary(), MAPS_SUMMARY)
    bar.close()
    return summary()


def _write_summary(output_dir, summary, name="summary.json"):
    with atomic_path(output_dir / name) as temporary:
        temporary.write_text(json.dumps(summary, indent=2))
