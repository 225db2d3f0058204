"""Zhuo & Sim behind the same predictor interface as DMENet's and Park'17's, so every tool can run it.

No network: nothing here imports TensorFlow, so ``infer.py --method zhuo11`` starts in a fraction of a
second.
"""
import dataclasses

import numpy as np

from dmenet.files.images import to_official_input
from dmenet.units import PixelSigmaRange
from dmenet.zhuo11.params import DEFAULT_PARAMS, Zhuo11Params

DEFAULT_MAX_PIXELS = 2_000_000


@dataclasses.dataclass(frozen=True)
class Zhuo11Units(PixelSigmaRange):
    """What Zhuo & Sim's maps mean: Gaussian σ in pixels; edge estimates are clamped to max_blur."""

    sigma_max: float = DEFAULT_PARAMS.max_blur
    sigma_min: float = 0.0
    kind: str = "zhuo11"

    @property
    def description(self):
        return f"sigma_px (Zhuo & Sim 2011 Gaussian σ, edge estimates clamped to {self.sigma_max:g} px, propagated)"



class Zhuo11Predictor:
    """Photo → Zhuo & Sim σ map in pixels, with the interface of ``DefocusPredictor`` and ``Park17Predictor``.

    Args:
        params: ``Zhuo11Params`` (default: the official demo's), or None for the defaults.
        max_side: shrink photos whose long side exceeds this first; σ is rescaled to full-size pixels.
        max_pixels: shrink larger photos to this many pixels first (default 2 megapixels): the
            propagation holds ~1 KB per pixel; None processes every photo at full size.
        solver: "auto", "amg" (multigrid-preconditioned CG to `tolerance`) or "direct" (the reference).
        tolerance: relative residual of the iterative solve (None: ``dmenet.propagation`` default).
        keep_intermediates: keep every stage's output of the last photo in ``last_result``.
        **overrides: any ``Zhuo11Params`` field (edge_threshold, reblur_std, lam, max_blur, canny_sigma).

    Example:
        >>> predictor = Zhuo11Predictor(lam=0.001)
        >>> sigma = predictor.predict_sigma(rgb_float01)
    """

    method = "zhuo11"
    precision = "fp64"
    precision_reason = "classical method: float64 throughout, no network"
    xla = False
    tile = margin = None
    runs_compiled_kernels = True  # compiled once after installing (dmenet.native_kernels, dmenet.kernel_cache)

    def __init__(self, params=None, max_side=None, max_pixels=DEFAULT_MAX_PIXELS, solver="auto", tolerance=None,
                 keep_intermediates=False, **overrides):
        params = DEFAULT_PARAMS if params is None else params
        if overrides:
            unknown = sorted(set(overrides) - {field.name for field in dataclasses.fields(Zhuo11Params)})
            if unknown:
                raise ValueError(f"unknown Zhuo & Sim option(s) {', '.join(unknown)}; expected "
                                 f"{', '.join(f.name for f in dataclasses.fields(Zhuo11Params))}")
            params = dataclasses.replace(params, **overrides)
        for name, value in (("max_side", max_side), ("max_pixels", max_pixels)):
            if value is not None and not (isinstance(value, int) and value >= 3):
                raise ValueError(f"{name} must be an integer ≥ 3 or None, got {value!r}")
        self.params, self.max_side, self.max_pixels = params, max_side, max_pixels
        self.solver, self.tolerance, self.keep_intermediates = solver, tolerance, keep_intermediates
        self.encoding = Zhuo11Units(sigma_max=params.max_blur)
        self.last_stage_seconds = {}
        self.last_result = None
        # the kernels' cached machine code loads while the caller reads its photos (≈ 0.1 s of a small photo's run)
        from dmenet import native_kernels
        from dmenet.zhuo11.pipeline import KERNEL_MODULES

        native_kernels.preload(*KERNEL_MODULES)

    @classmethod
    def from_weights(cls, path=None, precision="auto", **options):
        """The interface of the network methods: Zhuo & Sim has no weights, so `path` must be None.

        Args:
            path: must be None.
            precision: accepted for the common interface and ignored: every stage runs in float64.
            **options: the constructor's arguments.

        Returns:
            Zhuo11Predictor.
        """
        if path is not None:
            raise ValueError("zhuo11 has no weights (it is a classical method); leave --weights out")
        return cls(**options)

    def predict(self, image, progress=None, stop=None):
        """σ in pixels of the input image, with its scale information (``dmenet.inference.tiling.Prediction``).

        Args:
            image: H×W×3 float in [0, 1] or uint8.
            progress: called as progress(done, total, stage=name) as each stage starts (``predict_in_stages``).
            stop: called between stages; returning True raises ``InferenceInterrupted``.
        """
        from dmenet.inference.staged import predict_in_stages
        from dmenet.inference.tiling import Prediction
        from dmenet.zhuo11.pipeline import STAGES, estimate_zhuo11

        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"zhuo11 needs an H×W×3 RGB image, got shape {image.shape}")

        def estimate(image, on_stage):
            return estimate_zhuo11(to_official_input(image), self.params, solver=self.solver, tolerance=self.tolerance,
                                   keep_intermediates=self.keep_intermediates, on_stage=on_stage)

        sigma, scale, result = predict_in_stages(image, estimate, STAGES, max_side=self.max_side, max_pixels=self.max_pixels,
                                                 progress=progress, stop=stop, min_side=3)
        self.last_stage_seconds = result.stage_seconds
        self.last_result = result if self.keep_intermediates else None
        return Prediction(sigma, scale, self.params.max_blur / scale, tiles=1)

    def predict_sigma(self, image, progress=None, stop=None):
        """σ in pixels of the input image, H×W float32."""
        return self.predict(image, progress, stop).sigma
