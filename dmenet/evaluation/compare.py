"""Several defocus methods on several benchmarks in one run (``evaluate.py --compare``).

A method is either run (a registered method: ``dmenet=WEIGHTS``, ``park17[=WEIGHTS]``, ``zhuo11``) or
read from the maps another method wrote (``NAME[:UNIT]=DIR``). Every method is scored by the code a
single ``evaluate.py`` run uses (``method_source`` / ``folder_source`` and ``runner.evaluate``), so its
numbers equal a separate run's. Maps a method computes are kept in OUT/<benchmark>/maps_<method>/
with the seconds each took, and reused by the next run; a method that fails is reported in one line
and the others go on.
"""
import dataclasses
import datetime
import pathlib
import re
import statistics
import sys

from dmenet.evaluation import runner
from dmenet.evaluation.datasets import BENCHMARKS, SPLITS, open_benchmark
from dmenet.evaluation.predictions import UNITS, PredictionFolder, predict_to_folder, read_seconds

NAME_PATTERN = r"[A-Za-z0-9_.+-]+"


def safe_name(name):
    """A label as a file-name part."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """One column of the comparison: a method to run, or a folder of maps some other method wrote."""

    label: str
    method: str | None = None  # a registered method to run; None: maps in `folder`
    weights: str | None = None
    folder: pathlib.Path | None = None
    unit: str | None = None  # maps only: what a stored value means (None: inferred)

    @property
    def runs(self):
        return self.method is not None


def parse_method(text, methods):
    """``dmenet=WEIGHTS``, ``park17``, ``park17=WEIGHTS``, ``zhuo11`` or ``NAME[:UNIT]=DIR`` → MethodSpec.

    Args:
        text: one --compare argument.
        methods: the methods this project runs (``dmenet.cli.methods.METHODS``).

    Returns:
        MethodSpec.

    Example:
        >>> parse_method("hifst:score=maps/hifst", ("dmenet", "park17"))
        MethodSpec(label='hifst', method=None, weights=None, folder=PosixPath('maps/hifst'), unit='score')
    """
    name, has_value, value = text.partition("=")
    name, _, unit = name.strip().partition(":")
    unit = unit or None
    if not re.fullmatch(NAME_PATTERN, name):
        raise ValueError(f"--compare {text!r}: write NAME, NAME=WEIGHTS or NAME[:UNIT]=DIR, the name in letters, digits, '_', '.', '-'")
    if name in methods:
        if unit is not None:
            raise ValueError(f"--compare {text!r}: {name} writes σ in pixels; a unit goes only with another method's maps (NAME:UNIT=DIR)")
        if has_value and not value:
            raise ValueError(f"--compare {text!r}: the weights file is missing after '='")
        return MethodSpec(name, method=name, weights=value or None)
    if not has_value or not value:
        raise ValueError(f"--compare {text!r}: {name} is not a method this project runs ({', '.join(methods)}); "
                         f"give its maps as {name}=DIR or {name}:UNIT=DIR (UNIT: {', '.join(UNITS)})")
    if unit is not None and unit not in UNITS:
        raise ValueError(f"--compare {text!r}: unknown unit {unit!r}; choose one of {', '.join(UNITS)}")
    return MethodSpec(name, folder=pathlib.Path(value), unit=unit)


def unique_labels(specs):
    """Two runs of one method get their weights' names added; any other clash is an error."""
    counts = {}
    for spec in specs:
        counts[spec.label] = counts.get(spec.label, 0) + 1
    renamed = [dataclasses.replace(spec, label=f"{spec.label}_{pathlib.Path(spec.weights).name}")
               if counts[spec.label] > 1 and spec.weights else spec for spec in specs]
    labels = [spec.label for spec in renamed]
    clashes = sorted({label for label in labels if labels.count(label) > 1})
    if clashes:
        raise ValueError(f"--compare names {', '.join(clashes)} more than once; give each map folder its own name")
    return renamed


@dataclasses.dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark of the comparison: its kind, folder and split."""

    kind: str
    root: pathlib.Path | None
    split: str | None = None  # None: the kind's default (cuhk: dmenet-test)
    split_file: pathlib.Path | None = None
    images: pathlib.Path | None = None
    gt: pathlib.Path | None = None

    @property
    def label(self):
        if self.split_file is not None:
            return f"{self.kind}:{self.split_file.stem}"
        return self.kind if self.split is None else f"{self.kind}:{self.split}"


def parse_benchmark(text):
    """``KIND=ROOT`` or ``KIND:SPLIT=ROOT`` (SPLIT: a split name or a file of image stems) → BenchmarkSpec.

    Example:
        >>> parse_benchmark("cuhk:btbnet_test_100.txt=CUHK").label
        'cuhk:btbnet_test_100'
    """
    head, has_root, root = text.partition("=")
    kind, _, split = head.strip().partition(":")
    if kind not in BENCHMARKS or not has_root or not root:
        raise ValueError(f"--benchmark {text!r}: write KIND=ROOT or KIND:SPLIT=ROOT, KIND one of {', '.join(BENCHMARKS)}")
    if not split:
        return BenchmarkSpec(kind, pathlib.Path(root))
    if split in SPLITS:
        return BenchmarkSpec(kind, pathlib.Path(root), split=split)
    if not pathlib.Path(split).is_file():
        raise ValueError(f"--benchmark {text!r}: {split!r} is neither a split ({', '.join(SPLITS)}) nor a file of image stems")
    return BenchmarkSpec(kind, pathlib.Path(root), split_file=pathlib.Path(split))


@dataclasses.dataclass
class CompareOptions:
    """Protocol and reading options, the same for every method (as evaluate.py's flags)."""

    threshold: float = 0.5
    beta_squared: float = 0.3
    polarity: str | None = None
    max_coc: int = 29
    precision: str = "auto"
    max_side: int | None = None
    xla: str = "auto"
    pred_scale: float | None = None
    pred_suffix: str | None = None
    sigma_max: float = 7.0
    invert: bool = False
    size_mismatch: str = "error"
    match_by: str = "stem"
    method_options: dict = dataclasses.field(default_factory=dict)  # method → extra load_predictor arguments


def resolve_method_weights(method, weights=None):
    """The weights file a method will load (dmenet: the argument or $DMENET_WEIGHTS; park17: also the
    official file, cached or downloaded once), or None for a method without weights."""
    if method == "dmenet":
        from dmenet.weights.checkpoints import resolve_weights_path

        return resolve_weights_path(weights)
    if method == "park17":
        from dmenet.weights.park17 import resolve_park17_weights

        return pathlib.Path(resolve_park17_weights(weights))
    return pathlib.Path(weights) if weights else None


def load_method(method, weights=None, precision="auto", max_side=None, xla="auto", options=None):
    """(predictor, description, label) for a registered method, through ``dmenet.load_predictor``.

    The description (method, weights file with size and time or, without weights, the parameters;
    options) is stored with the maps, so maps from other weights or parameters are never mixed in;
    the label names the run (dmenet: the weights file). `options` go to ``load_predictor`` as they are
    (e.g. zhuo11's parameters).
    """
    from dmenet.api import load_predictor

    path = resolve_method_weights(method, weights)
    arguments = {"precision": precision, "max_side": max_side, **(options or {})}
    if method == "dmenet":
        arguments["xla"] = xla
    predictor = load_predictor(method, None if path is None else str(path), **arguments)
    if path is None:  # a method without weights: its parameters say what ran
        return predictor, f"{method} {getattr(predictor, 'params', '')}, max_side={max_side}", safe_name(method)
    stat = path.stat()
    label = path.name if method == "dmenet" else f"{method}_{path.name}"
    description = (f"{method} {path.resolve()} ({stat.st_size} bytes, mtime {int(stat.st_mtime)}), "
                   f"max_side={max_side}, precision={getattr(predictor, 'precision', None)}")
    return predictor, description, safe_name(label)


def method_source(predictor, description, samples, folder, label, method, progress=True):
    """Run a loaded method on the samples (maps already in `folder` are reused) → PredictionFolder of σ maps."""
    sigma_max = predict_to_folder(predictor, samples, folder, description, progress=progress, desc=f"{label}: maps")
    return PredictionFolder(folder, unit="sigma", sigma_max=sigma_max, label=label, method=method)


def folder_source(folder, label, unit, options, method=None):
    """Another method's maps, read as the options say (evaluate.py's --pred-* flags)."""
    return PredictionFolder(folder, unit=unit, scale=options.pred_scale, suffix=options.pred_suffix,
                            sigma_max=options.sigma_max, invert=options.invert, size_policy=options.size_mismatch,
                            match=options.match_by, label=label, method=method)


def timing(folder, samples):
    """Seconds per photo of the maps in `folder` for these samples, or None when none were timed.

    A photo whose time included compiling the method's kernels (the first run after installing,
    ``dmenet.kernel_cache``) is left out when other photos were timed: it measures the install.
    """
    recorded = read_seconds(folder)
    timed = [recorded[sample.stem] for sample in samples if sample.stem in recorded]
    if not timed:
        return None
    timed = [t for t in timed if not t.get("compiled_kernels")] or timed
    return {"mean": statistics.fmean(t["wall"] for t in timed), "median": statistics.median(t["wall"] for t in timed),
            "cpu_mean": statistics.fmean(t["cpu"] for t in timed), "photos": len(timed), "of": len(samples)}


@dataclasses.dataclass
class Entry:
    """One method on one benchmark: its result, or why it failed."""

    benchmark: str
    method: str
    result: runner.RunResult | None = None
    source: PredictionFolder | None = None
    seconds: dict | None = None
    error: str | None = None

    @property
    def ok(self):
        return self.result is not None


@dataclasses.dataclass
class Comparison:
    """Everything one --compare run found: the methods and benchmarks in table order, the opened data
    sets, one Entry per method × benchmark, and what ran it (command, device, time)."""

    methods: list
    benchmarks: list
    datasets: dict  # benchmark label → Dataset (absent when it could not be opened)
    entries: list
    options: CompareOptions
    command: str | None = None
    device: str | None = None
    created_utc: str = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))

    def entry(self, benchmark, method):
        return next((e for e in self.entries if e.benchmark == benchmark and e.method == method), None)

    @property
    def failures(self):
        return [entry for entry in self.entries if not entry.ok]


def maps_folder_for(folder, benchmark):
    """A map folder holding one sub-folder per benchmark (named like the benchmark, its kind or its root
    folder, e.g. maps/cuhk or maps/CUHK) gives that sub-folder; otherwise the folder itself."""
    names = [safe_name(benchmark.label), benchmark.kind] + ([benchmark.root.name] if benchmark.root is not None else [])
    for name in names:
        if name and (folder / name).is_dir():
            return folder / name
    return folder


LINE_LIMIT = 300


def _error_text(error):
    """The whole message (kept in comparison.json), named by its type when it is not an expected kind."""
    text = str(error).strip() or type(error).__name__
    return text if isinstance(error, (ValueError, OSError, LookupError)) else f"{type(error).__name__}: {text}"


def one_line(text):
    """A message as one line for the terminal: its lines joined, cut at LINE_LIMIT characters."""
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return line if len(line) <= LINE_LIMIT else line[:LINE_LIMIT - 40].rstrip() + " … (all of it in comparison.json)"


def _print_line(line):
    """Results to stdout; a failure's one line to stderr."""
    print(line, file=sys.stderr if line.startswith("error:") else sys.stdout, flush=True)


def run_comparison(methods, benchmarks, out, options=None, progress=True, log=None, command=None, device=None):
    """Run and score every method on every benchmark; failures are reported and kept, never fatal.

    Args:
        methods: MethodSpecs (``parse_method``), in table order.
        benchmarks: BenchmarkSpecs (``parse_benchmark``).
        out: output folder; computed maps go to OUT/<benchmark>/maps_<method>/ and are reused.
        options: CompareOptions.
        progress: progress bars per method (with the photo being processed) and per scoring pass.
        log: called with each line for the user (default: stdout, lines starting "error:" to stderr).
        command, device: recorded in the outputs.

    Returns:
        Comparison (write it with ``write_comparison``).

    Example:
        >>> specs = [parse_method(t, ("dmenet", "park17")) for t in ["park17", "hifst:score=maps"]]
        >>> result = run_comparison(specs, [parse_benchmark("cuhk=CUHK")], "compare_out")
    """
    options = options or CompareOptions()
    log = log or _print_line
    out = pathlib.Path(out)
    methods = unique_labels(list(methods))
    comparison = Comparison(methods, list(benchmarks), {}, [], options, command, device)
    loaded = {}
    for benchmark in benchmarks:
        try:
            dataset = open_benchmark(benchmark.kind, benchmark.root, benchmark.images, benchmark.gt, options.polarity,
                                     options.max_coc, split_file=benchmark.split_file,
                                     require_images=any(spec.runs for spec in methods),
                                     **({"split": benchmark.split} if benchmark.split else {}))
        except Exception as error:  # noqa: BLE001  (any failure to open a set is reported, the others go on)
            text = _error_text(error)
            log(f"error: benchmark {benchmark.label} cannot be used: {one_line(text)}")
            comparison.entries += [Entry(benchmark.label, spec.label, error=f"benchmark: {text}") for spec in methods]
            continue
        comparison.datasets[benchmark.label] = dataset
        log(f"{benchmark.label}: {len(dataset.samples)} images (split {dataset.split})")
        for spec in methods:
            comparison.entries.append(_run_one(spec, benchmark, dataset, out, options, loaded, progress, log))
    return comparison


def _run_one(spec, benchmark, dataset, out, options, loaded, progress, log):
    entry = Entry(benchmark.label, spec.label)
    try:
        if spec.runs:
            if spec.label not in loaded:
                log(f"loading {spec.label}")
                try:
                    loaded[spec.label] = load_method(spec.method, spec.weights, options.precision, options.max_side, options.xla,
                                                     options.method_options.get(spec.method))
                except Exception as error:  # noqa: BLE001
                    loaded[spec.label] = error
            if isinstance(loaded[spec.label], Exception):
                raise loaded[spec.label]
            predictor, description, _ = loaded[spec.label]
            folder = out / safe_name(benchmark.label) / f"maps_{safe_name(spec.label)}"
            entry.source = method_source(predictor, description, dataset.samples, folder, spec.label, spec.method, progress)
            entry.seconds = timing(folder, dataset.samples)
        else:
            entry.source = folder_source(maps_folder_for(spec.folder, benchmark), spec.label, spec.unit, options)
        entry.result = runner.evaluate(dataset, entry.source, threshold=options.threshold,
                                       beta_squared=options.beta_squared, progress=progress)
    except KeyboardInterrupt:
        raise
    except Exception as error:  # noqa: BLE001  (one method's failure must not lose the others)
        entry.error, entry.result = _error_text(error), None
        log(f"error: {spec.label} on {benchmark.label} failed: {one_line(entry.error)}")
        return entry
    from dmenet.evaluation.report import format_result

    log(format_result(entry.result))
    return entry

