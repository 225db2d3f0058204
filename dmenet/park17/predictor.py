"""Park'17 behind the same predictor interface as DMENet's, so every tool can run either method."""
import dataclasses

from dmenet.files.images import to_official_input
from dmenet.park17.params import DEFAULT_PARAMS, SIGMA_MAX, SIGMA_MIN
from dmenet.park17.pipeline import estimate_park17
from dmenet.units import PixelSigmaRange

DEFAULT_MAX_PIXELS = 2_000_000


@dataclasses.dataclass(frozen=True)
class Park17Units(PixelSigmaRange):
    """What Park'17's maps mean: Gaussian σ in pixels, nominally within the classifier's classes."""

    sigma_min: float = SIGMA_MIN
    sigma_max: float = SIGMA_MAX
    kind: str = "park17"

    @property
    def description(self):
        return f"sigma_px (Park'17 Gaussian σ classes {self.sigma_min:g}..{self.sigma_max:g} px, propagated)"


class Park17Predictor:
    """Photo → Park'17 σ map in pixels, with the same interface as ``DefocusPredictor``.

    Args:
        classifier: the patch network (``dmenet.weights.park17.load_park17_classifier``).
        max_side: shrink photos whose long side exceeds this first; σ is rescaled to full-size pixels.
        max_pixels: shrink larger photos to this many pixels first (default 2 megapixels). The
            propagation holds ~1 KB per pixel (matting Laplacian and its multigrid), so this bounds
            memory at a few GB whatever the photo; None processes every photo at full size.
        params: the method's parameters.
        precision: "fp32" or "bf16": the classifier's arithmetic (``network.classifier_in_precision``);
            the hand-crafted stages (edges, features, propagation) stay float64 either way.
        precision_reason: why this precision (``from_weights`` passes ``resolve_precision``'s reason).
        keep_intermediates: keep every stage's output of the last photo in ``last_result``
            (the classifier's labels and confidences among them), e.g. to compare precisions.

    Examples:
        >>> predictor = Park17Predictor.from_weights("DHDE_model.caffemodel")
        >>> sigma = predictor.predict_sigma(rgb_float01)
    """

    method = "park17"
    xla = False  # its small classifier runs through TensorFlow's graph (dmenet.inference.xla is about B)
    tile = margin = None
    runs_compiled_kernels = True  # edges, propagation: compiled once after installing (dmenet.native_kernels)

    def __init__(self, classifier, max_side=None, max_pixels=DEFAULT_MAX_PIXELS, params=DEFAULT_PARAMS,
                 precision="fp32", precision_reason="requested", keep_intermediates=False):
        from dmenet.park17.network import classifier_in_precision

        self.classifier = classifier_in_precision(classifier, precision)
        self.max_side, self.max_pixels, self.params = max_side, max_pixels, params
        self.precision, self.precision_reason = precision, precision_reason
        self.keep_intermediates = keep_intermediates
        self.encoding = Park17Units()
        self.last_stage_seconds = {}
        self.last_result = None

    @classmethod
    def from_weights(cls, path=None, precision="auto", **options):
        """Load the classifier (official .caffemodel, our .weights.h5, or None for the official file).

        Args:
            path: the weight file, or None for $DMENET_PARK17_WEIGHTS / the official file.
            precision: "auto", "fp32" or "bf16" (``dmenet.inference.precision.resolve_precision``).
            **options: the constructor's other arguments (max_side, max_pixels, params, keep_intermediates).

        Returns:
            Park17Predictor; its `precision` and `precision_reason` say what was chosen.
        """
        from dmenet.inference.precision import resolve_precision
        from dmenet.weights.park17 import load_park17_classifier

        chosen, reason = resolve_precision(precision)
        return cls(load_park17_classifier(path), precision=chosen, precision_reason=reason, **options)

    def predict(self, image, progress=None, stop=None):
        """σ in pixels of the input image, with its scale information (``dmenet.inference.tiling.Prediction``).

        Args:
            image: H×W×3 float in [0, 1] or uint8.
            progress: called as progress(done, total, stage=name) as each of the pipeline's stages starts
                (``done`` stages finished), and with done == total and stage "done" at the end.
            stop: called between stages; returning True raises ``InferenceInterrupted``.
        """
        from dmenet.inference.staged import predict_in_stages
        from dmenet.inference.tiling import Prediction
        from dmenet.park17.pipeline import SEQUENTIAL_STAGES

        def estimate(image, on_stage):
            return estimate_park17(to_official_input(image), self.classifier, self.params, on_stage=on_stage,
                                   keep_intermediates=self.keep_intermediates)

        sigma, scale, result = predict_in_stages(image, estimate, SEQUENTIAL_STAGES, max_side=self.max_side,
                                                 max_pixels=self.max_pixels, progress=progress, stop=stop)
        self.last_stage_seconds = result.stage_seconds
        self.last_result = result if self.keep_intermediates else None
        return Prediction(sigma, scale, self.encoding.sigma_max / scale, tiles=1)

    def predict_sigma(self, image, progress=None, stop=None):
        """σ in pixels of the input image, H×W float32."""
        return self.predict(image, progress, stop).sigma
