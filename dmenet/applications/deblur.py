"""All-in-focus image from a photo and its σ map: the official DMENet deconvolution (APPLICATIONS.md §2).

The photo is split into σ layers (32 quantile bins, each pixel at its bin's lower edge); every layer
is deconvolved over the whole frame with its Gaussian (Krishnan & Fergus' hyper-Laplacian solver,
α = 1.5) and kept only at its own pixels. The default ``mode="exact"`` reproduces the official
MATLAB code stage by stage; where it spends its time differs:

- everything that depends only on the layer's σ and frame size (kernel OTF, denominators, taper
  weights) is computed once and shared by the three channels, solved together in one batch;
- ``edgetaper`` changes only a band of width 2·ks + 1 along the frame's border (its weight is 1
  elsewhere), so its circular blur is evaluated there alone instead of by two full-frame FFTs;
- the shrinkage table is read by direct index (the table is uniform) instead of an interpolation search,
  inside one compiled (numba) pass per iteration that also forms the gradients and the divergence;
- real FFTs, and layers run on ``workers`` threads (NumPy and pocketfft release the GIL).

``mode="conservative"`` (beyond the official) deconvolves each pixel with the smallest σ within
``radius`` px (3) and feathers the layer masks by a Gaussian of ``feather`` px (1.5): the official's
seams and ringing at depth edges, where the photo mixes two blurs, shrink (+1.5 dB PSNR in boundary
bands, +0.6 dB overall on SYNDOF scenes; docs/deblur.md). ``mode="fast"`` solves in float32 on
FFT-friendly frame sizes (docs/deblur.md states its cost).
"""
import concurrent.futures
import contextlib
import functools
import math
import threading
import time

import numpy as np
import scipy.fft

from dmenet.applications.inputs import SigmaCropWarning, photo_and_sigma  # noqa: F401  (SigmaCropWarning: part of this API)
from dmenet.native_kernels import kernel
from dmenet.syndof import blas_threads
from dmenet.syndof.kernels import EPS, fspecial_gaussian

LAMBDA_PRESETS = {"cuhk": 420.0, "dpdd": 16.8, "realdof": 4.2}
MODES = ("exact", "conservative", "fast")
CONSERVATIVE_RADIUS = 3  # px: σ near a depth edge is the smallest within this distance
CONSERVATIVE_FEATHER = 1.5  # px: Gaussian σ that feathers the layer masks
ALPHA = 1.5  # the official hyper-Laplacian exponent
BINS = 32
KERNEL_WINDOW = 101  # fspecial('gaussian', [101 101], σ)
TAPER_PASSES = 4
BETA_START, BETA_RATE, BETA_MAX = 1.0, 2.0 * math.sqrt(2.0), 2.0**8
TABLE_LIMIT, TABLE_STEP = 10.0, 1e-4  # the shrinkage table: v ∈ [−10, 10] by 1e-4
TABLE_INTERVALS = 200_000
NEWTON_STEPS = 4


class StageClock:
    """Thread CPU seconds per stage, summed over the threads that solve layers (for the benchmark)."""

    def __init__(self):
        self.seconds = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def stage(self, name):
        start = time.thread_time()
        try:
            yield
        finally:
            elapsed = time.thread_time() - start
            with self._lock:
                self.seconds[name] = self.seconds.get(name, 0.0) + elapsed


class _NoClock:
    @contextlib.contextmanager
    def stage(self, name):
        yield


def resolve_lambda(value):
    """λ (the data weight) from a preset name ("cuhk", "dpdd", "realdof") or a positive number.

    Args:
        value: a preset name, a number, or a string holding one.

    Returns:
        float λ > 0.

    Example:
        >>> resolve_lambda("cuhk"), resolve_lambda("12.5")
        (420.0, 12.5)
    """
    if isinstance(value, str):
        key = value.strip().lower()
        if key in LAMBDA_PRESETS:
            return LAMBDA_PRESETS[key]
        try:
            number = float(key)
        except ValueError:
            raise ValueError(f"lambda must be a preset ({', '.join(LAMBDA_PRESETS)}) or a positive number, got {value!r}") from None
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"lambda must be a preset ({', '.join(LAMBDA_PRESETS)}) or a positive number, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"lambda must be a finite number > 0, got {value!r}")
    return number


def sigma_from_official_map(map_u8):
    """σ (px) of an official DMENet 8-bit map, decoded as the official deconvolution does (float64)."""
    values = np.asarray(map_u8, np.float64)
    return np.maximum(0.0, (values / 255.0 * 15.0 - 1.0) / 2.0)


# ---------------------------------------------------------------------------------------------
# Quantisation and kernels
# ---------------------------------------------------------------------------------------------


def matlab_quantiles(sorted_values, probabilities):
    """MATLAB's quantile: the j-th of n sorted values sits at p = (j − ½)/n, linear in between, clamped
    outside (NumPy's method="hazen"; written out so that the rounding matches MATLAB's to the bit)."""
    count = len(sorted_values)
    position = np.asarray(probabilities, np.float64) * count + 0.5  # 1-based
    lower = np.floor(position).astype(np.int64)
    result = np.empty(len(position))
    below, above = lower < 1, lower >= count
    inside = ~(below | above)
    result[below] = sorted_values[0]
    result[above] = sorted_values[-1]
    low = lower[inside]
    fraction = position[inside] - low
    result[inside] = (1.0 - fraction) * sorted_values[low - 1] + fraction * sorted_values[low]
    return result


def quantize_sigma(sigma, bins=BINS):
    """The official quantisation: lower bin edges of `bins` quantiles of the distinct σ values.

    Args:
        sigma: H×W σ map (px), finite and ≥ 0.
        bins: number of quantiles (32 officially); bins + 2 edges.

    Returns:
        (sigma_q, bin_index, edges): the quantised map, the 1-based bin of every pixel (MATLAB's
        discretize: e_j ≤ x < e_{j+1}, the last bin closed) and the edges.
    """
    sigma = np.asarray(sigma, np.float64)
    distinct = np.unique(sigma)
    probabilities = np.arange(1, bins + 1) / (bins + 1)
    edges = np.concatenate([[distinct[0]], matlab_quantiles(distinct, probabilities), [distinct[-1]]])
    # side="right" puts a value equal to repeated edges in the last of them: the bins before it are empty.
    index = np.searchsorted(edges, sigma, side="right") - 1
    np.minimum(index, len(edges) - 2, out=index)  # the maximum closes the last bin
    return edges[index], index + 1, edges


def layer_kernel(sigma):
    """The official layer kernel: fspecial('gaussian', [101 101], σ) cropped to its non-zero taps.

    Returns a 1×1 delta where the centre's neighbours vanish (σ ≲ 0.118, σ = 0 included): the layer
    is then an identity, copied rather than deconvolved.
    """
    if sigma <= 0 or math.exp(-1.0 / (2.0 * sigma * sigma)) < EPS:
        return np.ones((1, 1))
    return fspecial_gaussian(KERNEL_WINDOW, float(sigma))


def psf2otf(psf, shape):
    """MATLAB psf2otf for a real PSF, as the rfft2 half-spectrum: zero-pad to `shape`, centre to index 0."""
    padded = np.zeros(shape)
    padded[: psf.shape[0], : psf.shape[1]] = psf
    padded = np.roll(padded, (-(psf.shape[0] // 2), -(psf.shape[1] // 2)), axis=(0, 1))
    return scipy.fft.rfft2(padded)


# ---------------------------------------------------------------------------------------------
# edgetaper
# ---------------------------------------------------------------------------------------------


def taper_profile(projection, length):
    """1 − β for one axis of MATLAB's edgetaper: β = the circular autocorrelation of the PSF's
    projection on length − 1 points, extended by its first sample, divided by its maximum."""
    spectrum = np.fft.fft(projection, length - 1)
    autocorrelation = np.real(np.fft.ifft(np.abs(spectrum) ** 2))
    autocorrelation = np.concatenate([autocorrelation, autocorrelation[:1]])
    return 1.0 - autocorrelation / autocorrelation.max()


class EdgeTaper:
    """MATLAB edgetaper(image, psf) for a batch of C×m×n images sharing one centred, odd-sized PSF.

    The weight α = (1 − β₁)ᵀ(1 − β₂) is 1 except within r = 2·ks + 1 of the frame's border (β vanishes
    beyond the autocorrelation's support; there the official result differs from the image by
    (1 − α)·blur with 1 − α at the 1e-17 rounding level). So only the border band is recomputed: the
    r rows at each end form one band of 2r rows across the wrap-around, blurred across by a small
    Toeplitz product (from the 2r + 2·ks rows it reads) and along by a 1-D circular FFT; the columns
    likewise. Frames too small
    for two separate bands take the full-frame FFT blur.
    """

    def __init__(self, kernel, shape):
        self.shape = shape
        psf = kernel / kernel.sum()
        self.half = kernel.shape[0] // 2
        self.row_alpha = taper_profile(psf.sum(axis=1), shape[0])
        self.col_alpha = taper_profile(psf.sum(axis=0), shape[1])
        self.reach = 2 * self.half + 1
        self.full_frame = 2 * (self.reach + self.half) > min(shape)
        if self.full_frame:
            self.otf = psf2otf(psf, shape)
            return
        # The separable form of the PSF (the fspecial taps it drops are < eps of the peak).
        taps = psf.sum(axis=1)
        self.row_spectrum = _circular_taps_spectrum(taps, shape[1])  # blur along a row (length n)
        self.col_spectrum = _circular_taps_spectrum(taps, shape[0])
        band, width = 2 * self.reach, 2 * self.reach + 2 * self.half
        self.across = np.zeros((band, width))  # band[r] = Σ_t taps[t]·block[r + 2·ks − t]
        for tap, weight in enumerate(taps):
            self.across[np.arange(band), np.arange(band) + 2 * self.half - tap] = weight
        self.band_rows = np.arange(shape[0] - self.reach, shape[0] + self.reach) % shape[0]
        self.block_rows = np.arange(shape[0] - self.reach - self.half, shape[0] + self.reach + self.half) % shape[0]
        self.band_cols = np.arange(shape[1] - self.reach, shape[1] + self.reach) % shape[1]
        self.block_cols = np.arange(shape[1] - self.reach - self.half, shape[1] + self.reach + self.half) % shape[1]

    def __call__(self, images, passes=TAPER_PASSES):
        images = np.array(images, np.float64)
        for _ in range(passes):
            low = images.min(axis=(1, 2))[:, None, None]
            high = images.max(axis=(1, 2))[:, None, None]
            if self.full_frame:
                blurred = scipy.fft.irfft2(scipy.fft.rfft2(images) * self.otf, s=self.shape)
                alpha = self.row_alpha[:, None] * self.col_alpha[None, :]
                images = np.clip(alpha * images + (1.0 - alpha) * blurred, low, high)
                continue
            # Both bands read the same (previous) image: blur both, then write. The short blur across
            # a band runs first, so the FFT along it only sees the band's own 2r lines.
            across = np.matmul(self.across, images[:, self.block_rows, :])
            blurred = scipy.fft.irfft(scipy.fft.rfft(across, axis=2) * self.row_spectrum, self.shape[1], axis=2)
            rows_alpha = self.row_alpha[self.band_rows][:, None] * self.col_alpha[None, :]
            rows_result = rows_alpha * images[:, self.band_rows, :] + (1.0 - rows_alpha) * blurred
            across = np.ascontiguousarray(np.matmul(images[:, :, self.block_cols], self.across.T).transpose(0, 2, 1))
            blurred = scipy.fft.irfft(scipy.fft.rfft(across, axis=2) * self.col_spectrum, self.shape[0], axis=2).transpose(0, 2, 1)
            cols_alpha = self.row_alpha[:, None] * self.col_alpha[self.band_cols][None, :]
            cols_result = cols_alpha * images[:, :, self.band_cols] + (1.0 - cols_alpha) * blurred
            images[:, self.band_rows, :] = np.clip(rows_result, low, high)
            images[:, :, self.band_cols] = np.clip(cols_result, low, high)
        return images


def _circular_taps_spectrum(taps, length):
    """rfft of centred 1-D taps on a circle of `length` (a 1-D psf2otf)."""
    padded = np.zeros(length)
    padded[: len(taps)] = taps
    return scipy.fft.rfft(np.roll(padded, -(len(taps) // 2)))


# ---------------------------------------------------------------------------------------------
# The hyper-Laplacian solver (Krishnan & Fergus, fast_deconv)
# ---------------------------------------------------------------------------------------------


def beta_schedule():
    """β for each outer iteration: 1, 2√2, 8, …, while below 256 (6 values), as MATLAB multiplies them."""
    betas, beta = [], BETA_START
    while beta < BETA_MAX:
        betas.append(beta)
        beta = beta * BETA_RATE
    return tuple(betas)


def _table_grid():
    """MATLAB's −10:1e-4:10 (the colon operator builds the halves from both ends)."""
    index = np.arange(TABLE_INTERVALS + 1, dtype=np.float64)
    from_start = -TABLE_LIMIT + index * TABLE_STEP
    from_end = TABLE_LIMIT - (TABLE_INTERVALS - index) * TABLE_STEP
    return np.where(index <= TABLE_INTERVALS / 2, from_start, from_end)


def newton_shrinkage(values, beta, alpha):
    """argmin_w |w|^α + (β/2)(w − v)² by 4 Newton steps from w = v, then the zero test (KF's newton_w)."""
    v = np.asarray(values, np.float64)
    w = v.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(NEWTON_STEPS):
            gradient = alpha * np.sign(w) * np.abs(w) ** (alpha - 1.0) + beta * (w - v)
            curvature = alpha * (alpha - 1.0) * np.abs(w) ** (alpha - 2.0) + beta
            w = w - gradient / curvature
    w[np.isnan(w)] = 0.0
    zero_cost = beta / 2.0 * v**2
    cost = np.abs(w) ** alpha + beta / 2.0 * (w - v) ** 2
    return (cost < zero_cost) * w


@functools.lru_cache(maxsize=32)
def shrinkage_table(beta, alpha):
    """(values, slopes) of the official lookup table for (β, α) over v ∈ [−10, 10]; slopes[i] is the
    segment i → i + 1 per grid step (the last one repeated, for extrapolation)."""
    values = newton_shrinkage(_table_grid(), beta, alpha)
    slopes = np.empty_like(values)
    slopes[:-1] = np.diff(values)
    slopes[-1] = slopes[-2]
    values.setflags(write=False)
    slopes.setflags(write=False)
    return values, slopes


@kernel(inline="always")
def _table_at(values, slopes, v):
    """interp1(grid, table, v, 'linear', 'extrap') by direct index: the grid is uniform."""
    position = v * (1.0 / TABLE_STEP) + TABLE_INTERVALS / 2
    index = min(max(int(math.floor(position)), 0), TABLE_INTERVALS - 1)
    return values[index] + (position - index) * slopes[index]


@kernel()
def shrink_and_diverge(x, values, slopes, out):
    """One w-step and the x-step's right-hand side, fused (one pass over a C×m×n batch):
    w = table(∇x) on the circular forward differences, out = dₓᵀwₓ + d_yᵀw_y with the circular
    backward differences w[i − 1] − w[i] (fast_deconv's Wxx, term by term in its order)."""
    channels, m, n = x.shape
    wy_above = np.empty(n, np.float64)  # w_y of the previous row (row m − 1 for row 0)
    for c in range(channels):
        for j in range(n):
            wy_above[j] = _table_at(values, slopes, x[c, 0, j] - x[c, m - 1, j])
        for i in range(m):
            below = i + 1 if i + 1 < m else 0
            wx_left = _table_at(values, slopes, x[c, i, 0] - x[c, i, n - 1])  # w_x at column n − 1
            for j in range(n):
                right = j + 1 if j + 1 < n else 0
                wx = _table_at(values, slopes, x[c, i, right] - x[c, i, j])
                wy = _table_at(values, slopes, x[c, below, j] - x[c, i, j])
                out[c, i, j] = -(wx - wx_left) + -(wy - wy_above[j])
                wx_left = wx
                wy_above[j] = wy
    return out


@kernel()
def x_step_spectrum(spectrum, numerator, kernel_power, smoothness, gamma):
    """F(x) = (N + γ·F(dᵀw)) / (|K|² + γ·(|F(d_x)|² + |F(d_y)|²)), in place on the C×… half-spectrum."""
    channels, rows, cols = spectrum.shape
    for c in range(channels):
        for i in range(rows):
            for j in range(cols):
                spectrum[c, i, j] = (numerator[c, i, j] + gamma * spectrum[c, i, j]) / (kernel_power[i, j] + gamma * smoothness[i, j])
    return spectrum


def gradient_weights(shape):
    """|F(d_x)|² + |F(d_y)|² on the rfft2 half-spectrum of `shape` (psf2otf of [1, −1] and [1; −1]):
    2 − 2·cos(2πk/size) per axis, in closed form."""
    rows = 2.0 - 2.0 * np.cos(2.0 * np.pi * np.arange(shape[0]) / shape[0])
    cols = 2.0 - 2.0 * np.cos(2.0 * np.pi * np.arange(shape[1] // 2 + 1) / shape[1])
    return rows[:, None] + cols[None, :]


def _largest_prime_factor(number):
    factor, largest = 2, 1
    while factor * factor <= number:
        while number % factor == 0:
            largest, number = factor, number // factor
        factor += 1
    return max(largest, number)


def fast_deconv(images, kernel, lam, alpha=ALPHA, *, dtype=np.float64):
    """Krishnan & Fergus' fast_deconv on a C×m×n batch: min (λ/2)‖k ⊛ x − y‖² + Σ|∇x|^α, circular.

    Args:
        images: C×m×n (or m×n) observed images y, already padded and tapered.
        kernel: odd-sized PSF, centred, symmetric under transposition (the official Gaussians).
        lam: λ, the data weight.
        alpha: the prior's exponent (its shrinkage is read from the official lookup table).
        dtype: float64 (exact) or float32 (mode="fast").

    Returns:
        x, the same shape as `images`.
    """
    single = images.ndim == 2
    y = images[None] if single else images
    # The problem is the same transposed (x and y differences swap, both shrink alike). pocketfft is
    # fastest with the frame's awkward length (a large prime factor) on the complex, first axis.
    transpose = _largest_prime_factor(y.shape[2]) > _largest_prime_factor(y.shape[1])
    if transpose:
        y, kernel = y.transpose(0, 2, 1), kernel.T
    y = np.ascontiguousarray(y, dtype)
    shape = y.shape[1:]
    otf = psf2otf(kernel, shape).real  # an even kernel: psf2otf returns it real, as here
    numerator = scipy.fft.rfft2(y)
    numerator *= otf.astype(dtype)
    kernel_power = (otf * otf).astype(dtype)
    smoothness = gradient_weights(shape).astype(dtype)
    x, divergence = y, np.empty_like(y)
    for beta in beta_schedule():
        values, slopes = shrinkage_table(beta, alpha)
        shrink_and_diverge(x, values, slopes, divergence)
        spectrum = scipy.fft.rfft2(divergence)
        x_step_spectrum(spectrum, numerator, kernel_power, smoothness, dtype(beta / lam))
        x = scipy.fft.irfft2(spectrum, s=shape, overwrite_x=True)
    if transpose:
        x = x.transpose(0, 2, 1)
    return x[0] if single else x


# ---------------------------------------------------------------------------------------------
# The whole image
# ---------------------------------------------------------------------------------------------


def deconvolve_layer(channels, sigma, lam, alpha=ALPHA, *, dtype=np.float64, fast_shape=False, clock=None):
    """One σ layer over the whole frame: replicate pad by ks, 4× edgetaper, solve, crop back.

    Args:
        channels: C×H×W float64 images.
        sigma: the layer's σ (px).
        lam, alpha: the solver's λ and α.
        dtype: float64 (exact) or float32.
        fast_shape: pad further (by replication) to FFT-friendly sizes (mode="fast"; changes the result).
        clock: optional `StageClock` to charge the stages to.

    Returns:
        C×H×W solution (the input itself for an identity layer).
    """
    clock = clock or _NoClock()
    kernel = layer_kernel(sigma)
    if kernel.shape == (1, 1):
        return channels
    half = kernel.shape[0] // 2
    height, width = channels.shape[1:]
    pad_rows = pad_cols = 0
    if fast_shape:
        pad_rows = scipy.fft.next_fast_len(height + 2 * half, real=True) - height - 2 * half
        pad_cols = scipy.fft.next_fast_len(width + 2 * half, real=True) - width - 2 * half
    with clock.stage("pad + edgetaper"):
        padded = np.pad(channels, ((0, 0), (half, half + pad_rows), (half, half + pad_cols)), mode="edge")
        tapered = EdgeTaper(kernel, padded.shape[1:])(padded)
    with clock.stage("solve"):
        solution = fast_deconv(tapered, kernel, lam, alpha, dtype=dtype)
    return solution[:, half : half + height, half : half + width]


def default_workers():
    """One worker per core this process may use."""
    from dmenet.cores import available_cores

    return available_cores()


def deblur(image, sigma, lam=420.0, *, mode="exact", progress=None, workers=None, **options):
    """All-in-focus image from a photo and its σ map (the official DMENet deconvolution).

    Args:
        image: H×W×3 photo, uint8 (read as /255, as the official code) or float in [0, 1].
        sigma: H×W σ map in pixels (every method of this project writes σ in px; for an official
            DMENet 8-bit map use `sigma_from_official_map`). A map smaller than the photo crops the
            photo to its top-left region and warns (`SigmaCropWarning`).
        lam: λ, the data weight (larger = less regularised), or a preset name: "cuhk" 420,
            "dpdd" 16.8, "realdof" 4.2 (see `resolve_lambda`).
        mode: "exact" (the official algorithm), "conservative" (σ near depth edges taken as the
            smallest within ``radius`` px, layer masks feathered by ``feather`` px: fewer seams and
            less ringing at depth edges, docs/deblur.md) or "fast" (float32 on FFT-friendly frames;
            an approximation of "exact", its PSNR against it in docs/deblur.md).
        progress: optional callable ``progress(done_layers, total_layers)``.
        workers: threads solving layers concurrently (default: the CPUs available).
        **options: ``bins`` (32), ``alpha`` (1.5); for "conservative" ``radius`` (3) and ``feather``
            (1.5); ``clock`` (a `StageClock` charged with each stage's thread CPU seconds, for benchmarks).

    Returns:
        H×W×3 float64 image in [0, 1] (the crop's size when the map is smaller than the photo).

    Raises:
        ValueError: a malformed photo or map, NaN or negative σ, λ ≤ 0, unknown mode or option.

    Example:
        >>> sharp = deblur(photo_u8, sigma_px, "cuhk")
        >>> write_png("sharp.png", np.floor(sharp * 255 + 0.5).astype(np.uint8))
    """
    lam = resolve_lambda(lam)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    bins = options.pop("bins", BINS)
    alpha = _positive_number("alpha", options.pop("alpha", ALPHA))
    clock = options.pop("clock", None) or _NoClock()
    plan_options = {}
    if mode == "conservative":
        plan_options["radius"] = options.pop("radius", CONSERVATIVE_RADIUS)
        plan_options["feather"] = _positive_number("feather", options.pop("feather", CONSERVATIVE_FEATHER), allow_zero=True)
    if options:
        raise ValueError(f"unknown option(s) for deblur mode {mode!r}: {', '.join(sorted(options))}")
    if isinstance(bins, bool) or not (isinstance(bins, (int, np.integer)) and bins >= 1):
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    photo, sigma = photo_and_sigma(image, sigma)
    if photo.min(initial=0.0) < 0.0 or photo.max(initial=0.0) > 1.0:
        raise ValueError("a float photo must hold values in [0, 1] (or pass uint8/uint16 pixels)")

    with clock.stage("quantise"):
        plan = LayerPlan(sigma, "conservative" if mode == "conservative" else "lower", bins, **plan_options)
    channels = np.ascontiguousarray(np.moveaxis(photo, 2, 0))
    output = np.zeros_like(channels)
    weight_total = np.zeros(sigma.shape)  # Σ of soft weights (1 up to rounding), divides the composition
    lock = threading.Lock()
    done = [0]

    def solve(level):
        solution = deconvolve_layer(channels, level, lam, alpha, dtype=np.float32 if mode == "fast" else np.float64,
                                    fast_shape=mode == "fast", clock=clock)
        with clock.stage("compose"):
            weight = plan.weight(level)
            with lock:
                compose(output, solution, weight)
                if weight.dtype != bool:
                    weight_total[...] += weight
                done[0] += 1
                if progress is not None:
                    progress(done[0], len(plan.levels))

    # Largest kernels first: the longest jobs start first, so the threads finish together.
    ordered = sorted(plan.levels, reverse=True)
    # The threads are the parallelism: BLAS (edgetaper's small products) stays on one thread each.
    with blas_threads.limited():
        if workers == 1:
            for level in ordered:
                solve(level)
        else:
            with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
                for future in [pool.submit(solve, level) for level in ordered]:
                    future.result()
    if mode == "conservative" and plan.feather > 0:
        output /= weight_total[None]
    np.clip(output, 0.0, 1.0, out=output)
    return np.moveaxis(output, 0, 2)


def _positive_number(name, value, allow_zero=False):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(number) and (number >= 0 if allow_zero else number > 0)):
        raise ValueError(f"{name} must be a finite number {'≥' if allow_zero else '>'} 0, got {value!r}")
    return number


class LayerPlan:
    """The σ levels to solve and how each pixel takes them (weights built one level at a time).

    Rules (the levels are always the official quantile edges of `sigma`, `quantize_sigma`):
        "lower": the official: the lower edge of the pixel's bin, a hard mask.
        "nearest": the nearer of the two levels bracketing σ, hard.
        "linear": both bracketing levels, weighted linearly in σ.
        "conservative": the lower edge of the smallest σ within ``radius`` px (a square window),
            masks feathered by a Gaussian of ``feather`` px (they still sum to 1: the filter is linear).
    """

    def __init__(self, sigma, rule="lower", bins=BINS, *, radius=CONSERVATIVE_RADIUS, feather=CONSERVATIVE_FEATHER):
        if rule not in ("lower", "nearest", "linear", "conservative"):
            raise ValueError(f"rule must be 'lower', 'nearest', 'linear' or 'conservative', got {rule!r}")
        sigma_q, _, edges = quantize_sigma(sigma, bins)
        self.rule, self.feather = rule, feather
        if rule == "conservative":
            if isinstance(radius, bool) or not (isinstance(radius, (int, np.integer)) and radius >= 0):
                raise ValueError(f"radius must be an integer ≥ 0 (px), got {radius!r}")
            from scipy import ndimage

            guarded = ndimage.minimum_filter(sigma, size=2 * int(radius) + 1, mode="nearest")
            index = np.minimum(np.searchsorted(edges, guarded, side="right") - 1, len(edges) - 2)
            sigma_q = edges[index]
        if rule in ("lower", "conservative"):
            self.assigned = sigma_q
            self.levels = [float(level) for level in np.unique(sigma_q)]
            return
        levels = np.unique(edges)
        self.grid = levels
        self.below = np.clip(np.searchsorted(levels, sigma, side="right") - 1, 0, len(levels) - 1)
        self.above = np.minimum(self.below + 1, len(levels) - 1)
        span = levels[self.above] - levels[self.below]
        self.upper_share = np.where(span > 0, (sigma - levels[self.below]) / np.where(span > 0, span, 1.0), 0.0)
        if rule == "nearest":
            self.upper_share = (self.upper_share >= 0.5).astype(np.float64)
        used = np.unique(np.concatenate([self.below[self.upper_share < 1], self.above[self.upper_share > 0]]))
        self.levels = [float(levels[index]) for index in used]

    def weight(self, level):
        """A bool H×W mask (hard rules) or float H×W weights for one level."""
        if self.rule == "lower":
            return self.assigned == level
        if self.rule == "conservative":
            mask = self.assigned == level
            if self.feather == 0:
                return mask
            from scipy import ndimage

            return ndimage.gaussian_filter(mask.astype(np.float64), self.feather, mode="nearest")
        index = int(np.searchsorted(self.grid, level))
        weight = np.where(self.below == index, 1.0 - self.upper_share, 0.0)
        weight += np.where((self.above == index) & (self.above != self.below), self.upper_share, 0.0)
        return weight > 0.5 if self.rule == "nearest" else weight


def compose(output, solution, weight):
    """Add one layer's C×H×W solution into `output`: copied where a bool mask is set, else weighted."""
    if weight.dtype == bool:
        output[:, weight] = solution[:, weight]
    else:
        output += weight[None] * solution
