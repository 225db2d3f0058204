"""All-in-focus (deconvolution) benchmark: speed against the official run, and quality on synthetic ground truth.

`python -m dmenet.bench deblur [--data ../shared/data] [--repeats 3] [--workers N] [--skip-quality]`

Speed: the official sample of `deconv_reference/` (640×608 after the crop, 33 layers), solved with
mode="exact" (and "fast", "conservative"); wall and process CPU seconds, thread CPU seconds per stage, the
ratio against the official run's recorded time, and the agreement with the official output.

Quality: SYNDOF scenes with ground truth — a sharp photo, a depth map, the project's generator
(`dmenet.synthesize_defocus`, fixed camera, max CoC 13 → σ ≤ 3 px) gives the blurred photo (uint8)
and the true σ; each is deblurred with the true σ. Every level is solved once and composed by the
rules of `LayerPlan`: "lower" (the official), "nearest", "linear" and "conservative" (that mode).
PSNR / SSIM against the sharp photo: whole image, region interiors and boundary bands (pixels within
⌈3·σ_max⌉ px of a σ jump > 0.25 px), beside the blurred input's.
"""
import argparse
import pathlib
import platform
import time

import numpy as np

from dmenet.applications import deblur as deconvolution
from dmenet.bench import SHARED_DATA
from dmenet.syndof import blas_threads

QUALITY_MAX_COC = 13
JUMP_PX = 0.25
RULES = ("lower", "nearest", "linear", "conservative")
RULE_NAMES = {"lower": "official (lower edge)", "nearest": "nearest level", "linear": "linear in σ",
              "conservative": "conservative (min σ r 3, feather 1.5)"}


# A plain transcription of the official MATLAB (full-frame complex FFTs per channel, np.interp on the
# table, edgetaper over the whole frame): this benchmark's same-run baseline and the tests' independent
# check of the optimised code.


def plain_psf2otf(psf, shape):
    padded = np.zeros(shape)
    padded[: psf.shape[0], : psf.shape[1]] = psf
    return np.fft.fft2(np.roll(padded, (-(psf.shape[0] // 2), -(psf.shape[1] // 2)), axis=(0, 1)))


def plain_edgetaper(image, psf):
    """MATLAB edgetaper over the whole frame."""
    psf = psf / psf.sum()
    alphas = []
    for axis, projection in enumerate((psf.sum(axis=1), psf.sum(axis=0))):
        z = np.real(np.fft.ifft(np.abs(np.fft.fft(projection, image.shape[axis] - 1)) ** 2))
        z = np.concatenate([z, z[:1]]) / z.max()
        alphas.append(1 - z)
    alpha = alphas[0][:, None] * alphas[1][None, :]
    blurred = np.real(np.fft.ifft2(np.fft.fft2(image) * plain_psf2otf(psf, image.shape)))
    return np.clip(alpha * image + (1 - alpha) * blurred, image.min(), image.max())


def plain_fast_deconv(y, kernel, lam, alpha=1.5):
    """fast_deconv.m line by line (x = y to start, 6 continuation steps, the table read by np.interp)."""
    grid = np.linspace(-10, 10, 200001)
    otf = plain_psf2otf(kernel, y.shape)
    numerator, denom1 = np.conj(otf) * np.fft.fft2(y), np.abs(otf) ** 2
    denom2 = np.abs(plain_psf2otf(np.array([[1.0, -1.0]]), y.shape)) ** 2 + np.abs(plain_psf2otf(np.array([[1.0], [-1.0]]), y.shape)) ** 2
    x, beta = y.copy(), 1.0
    while beta < 256:
        gamma = beta / lam
        table = deconvolution.newton_shrinkage(grid, beta, alpha)
        gx = np.concatenate([np.diff(x, axis=1), x[:, :1] - x[:, -1:]], axis=1)
        gy = np.concatenate([np.diff(x, axis=0), x[:1] - x[-1:]], axis=0)
        wx, wy = np.interp(gx, grid, table), np.interp(gy, grid, table)
        wxx = np.concatenate([wx[:, -1:] - wx[:, :1], -np.diff(wx, axis=1)], axis=1)
        wxx = wxx + np.concatenate([wy[-1:] - wy[:1], -np.diff(wy, axis=0)], axis=0)
        x = np.real(np.fft.ifft2((numerator + gamma * np.fft.fft2(wxx)) / (denom1 + gamma * denom2)))
        beta *= 2 * np.sqrt(2)
    return x


def plain_layer(channels, sigma, lam):
    """One layer, channel by channel, as the official code runs it: pad, 4× edgetaper, solve, crop."""
    kernel = deconvolution.layer_kernel(sigma)
    half = kernel.shape[0] // 2
    solved = []
    for channel in channels:
        tapered = np.pad(channel, half, mode="edge")
        for _ in range(deconvolution.TAPER_PASSES):
            tapered = plain_edgetaper(tapered, kernel)
        solved.append(plain_fast_deconv(tapered, kernel, lam)[half:-half, half:-half])
    return np.stack(solved)


def cpu_name():
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load_reference(data):
    """The official sample: photo (uint8), σ from the official 8-bit map, the official output and time."""
    import json

    from PIL import Image

    folder = data / "deconv_reference"
    photo = np.asarray(Image.open(folder / "cuhk0027_photo.jpg").convert("RGB"))
    map_u8 = np.asarray(Image.open(folder / "cuhk0027_map_in.png"))
    sigma = deconvolution.sigma_from_official_map(map_u8 if map_u8.ndim == 2 else map_u8[..., 0])
    official = np.load(folder / "cuhk0027_out_float32.npz")["output"]
    official_png = np.asarray(Image.open(folder / "cuhk0027_out.png"))
    record = json.loads((folder / "cuhk0027.json").read_text())
    return photo, sigma, official, official_png, record["official_seconds"]["replay_est_time"]


def matlab_uint8(image):
    """uint8(x·255) as MATLAB converts: halves away from zero."""
    return np.floor(np.clip(image, 0, 1) * 255.0 + 0.5).astype(np.uint8)


def psnr(a, b, mask=None):
    error = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    if mask is not None:
        if not mask.any():
            return float("nan")
        error = error[mask]
    mse = float(np.mean(error))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim_map(a, b):
    from skimage.metrics import structural_similarity

    return structural_similarity(a, b, channel_axis=2, data_range=1.0, full=True)[1].mean(axis=2)


def timed_run(photo, sigma, mode, workers, repeats):
    """Best of `repeats`: (wall, process CPU, per-stage thread CPU, image)."""
    best = None
    for _ in range(repeats):
        clock = deconvolution.StageClock()
        wall, cpu = time.perf_counter(), time.process_time()
        image = deconvolution.deblur(photo, sigma, "cuhk", mode=mode, workers=workers, clock=clock)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if best is None or wall < best[0]:
            best = (wall, cpu, dict(clock.seconds), image)
    return best


def speed(data, workers, repeats):
    import warnings

    photo, sigma, official, official_png, official_seconds = load_reference(data)
    warm = time.perf_counter()
    deconvolution.deblur(np.zeros((8, 8, 3)), np.ones((8, 8)), workers=1)  # numba: compile or load its cache
    warm = time.perf_counter() - warm
    print(f"CPU: {cpu_name()}; {workers} worker thread(s); JIT warm-up {warm:.2f} s (once per process)")
    print(f"official sample: {photo.shape[1]}×{photo.shape[0]} photo, σ map {sigma.shape[1]}×{sigma.shape[0]}; "
          f"official run {official_seconds:.1f} s (GNU Octave, 2 cores)")
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", deconvolution.SigmaCropWarning)
        for mode in ("exact", "fast", "conservative"):
            results[mode] = timed_run(photo, sigma, mode, workers, repeats)
    print(f"\n| mode | wall s | CPU s | × official (wall) | × official (CPU ÷ workers) | {' | '.join(sorted(results['exact'][2]))} |")
    print("| --- | --- | --- | --- | --- |" + " --- |" * len(results["exact"][2]))
    for mode, (wall, cpu, stages, _) in results.items():
        cells = " | ".join(f"{stages.get(name, 0.0):.2f}" for name in sorted(results["exact"][2]))
        print(f"| {mode} | {wall:.2f} | {cpu:.2f} | {official_seconds / wall:.1f} | {official_seconds * workers / cpu:.1f} | {cells} |")
    print("(stage columns: thread CPU seconds summed over workers; CPU ÷ workers is the wall time of idle cores)")
    exact = results["exact"][3]
    print(f"\nexact vs official: max |Δ| {np.abs(exact - official).max():.2e} (float32 reference), "
          f"uint8 identical {np.mean(matlab_uint8(exact) == official_png) * 100:.4f} %")
    for mode in ("fast", "conservative"):
        print(f"{mode} vs exact: PSNR {psnr(results[mode][3], exact):.2f} dB, max |Δ| {np.abs(results[mode][3] - exact).max():.2e}")
    layer_baseline(photo[: sigma.shape[0], : sigma.shape[1]], repeats)


def layer_baseline(photo, repeats, sigma=1.5753119429590021):
    """One layer (the reference's σ 1.575, ks 13) by the plain transcription and by this module, timed
    alternately in one thread, so the machine's load weighs on both alike."""
    channels = np.ascontiguousarray(np.moveaxis(photo / 255.0, 2, 0))
    times = {"plain NumPy transcription": [], "deconvolve_layer": []}
    for _ in range(repeats):
        for name, run in (("plain NumPy transcription", plain_layer), ("deconvolve_layer", deconvolution.deconvolve_layer)):
            wall, cpu = time.perf_counter(), time.process_time()
            with blas_threads.limited():
                result = run(channels, sigma, 420.0)
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
            results = times.setdefault("results", {})
            results[name] = result
    solved = times.pop("results")
    print(f"\nsame-run baseline, one layer (σ {sigma:.3f}, 3 channels, one thread), best of {repeats} alternated:")
    for name, samples in times.items():
        print(f"  {name}: wall {min(s[0] for s in samples):.3f} s, CPU {min(s[1] for s in samples):.3f} s")
    plain_cpu, ours_cpu = (min(s[1] for s in samples) for samples in times.values())
    difference = np.abs(solved["plain NumPy transcription"] - solved["deconvolve_layer"]).max()
    print(f"  CPU ratio {plain_cpu / ours_cpu:.1f}×; max |Δ| between them {difference:.1e}")


def scenes(data):
    """(name, sharp RGB float, depth mm, focus depth mm) for the quality table."""
    import skimage.data
    from skimage.transform import resize

    coffee = skimage.data.coffee()[:256, :384] / 255.0
    rows, cols = np.mgrid[:256, :384]
    planes = np.full((256, 384), 6000.0)
    planes[40:220, 200:360] = 2500.0
    planes[(rows - 150) ** 2 + (cols - 110) ** 2 < 80**2] = 1200.0
    yield "coffee, 3 planes (focus near)", coffee, planes, 1200.0
    far_focus = planes.copy()
    yield "coffee, 3 planes (focus far)", coffee, far_focus, 6000.0
    astronaut = resize(skimage.data.astronaut() / 255.0, (256, 256), anti_aliasing=True)
    rows, cols = np.mgrid[:256, :256]
    ramp = np.round(1000.0 + 4000.0 * (255 - rows) / 255.0, -1)  # a floor receding upwards, 10 mm steps
    ramp[(rows - 120) ** 2 + (cols - 128) ** 2 < 60**2] = 1000.0
    yield "astronaut, slanted plane + near disc", np.clip(astronaut, 0, 1), ramp, 1000.0
    redwood = data / "rgbd" / "open3d_redwood"
    if (redwood / "color" / "00000.jpg").is_file():
        from dmenet.syndof.depth_io import DepthConversion
        from dmenet.syndof.writer import load_pair

        image, depth = load_pair(redwood / "color" / "00000.jpg", redwood / "depth" / "00000.png", DepthConversion(), max_side=320)
        depth = np.round(depth, -1)
        yield "Redwood 00000 (real depth)", image, depth, float(np.percentile(depth, 10))


def quality(data, workers):
    import dmenet

    print(f"\nQuality with the true σ (λ = 420 'cuhk', max CoC {QUALITY_MAX_COC}); PSNR dB / SSIM, against the sharp photo")
    print("| scene | method | whole | interiors | boundary bands |")
    print("| --- | --- | --- | --- | --- |")
    totals = {}
    for name, sharp, depth, focus in scenes(data):
        depths = np.unique(depth)
        focus = float(depths[np.argmin(np.abs(depths - focus))])
        sample = dmenet.synthesize_defocus(sharp, depth, max_coc=QUALITY_MAX_COC, f_mm=50.0, z_focal=focus)
        observed = sample.blurred_uint8
        truth = np.asarray(sharp, np.float64)
        sigma = sample.labels.sigma.astype(np.float64)
        band = boundary_band(sigma)
        solutions = solve_levels(observed, sigma, workers)
        methods = {"blurred input": observed / 255.0}
        for rule in RULES:
            methods[RULE_NAMES[rule]] = compose_rule(sigma, rule, solutions)
        for method, image in methods.items():
            structure = ssim_map(image, truth)
            cells = []
            for mask in (None, ~band, band):
                score = psnr(image, truth, None if mask is None else np.repeat(mask[..., None], 3, axis=2))
                similarity = structure.mean() if mask is None else (structure[mask].mean() if mask.any() else float("nan"))
                cells.append("n/a" if np.isnan(score) else f"{score:.2f} / {similarity:.4f}")
                totals.setdefault(method, {}).setdefault(len(cells), []).append(score)
            print(f"| {name} | {method} | {' | '.join(cells)} |")
    print("| **mean** | | | | |")
    for method, columns in totals.items():
        cells = [f"{np.nanmean(columns[index]):.2f}" for index in (1, 2, 3)]
        print(f"| mean PSNR | {method} | {' | '.join(cells)} |")


def boundary_band(sigma):
    """Pixels within ⌈3·σ_max⌉ px of a σ jump larger than JUMP_PX between 4-neighbours."""
    from scipy import ndimage

    jumps = np.zeros(sigma.shape, bool)
    vertical = np.abs(np.diff(sigma, axis=0)) > JUMP_PX
    horizontal = np.abs(np.diff(sigma, axis=1)) > JUMP_PX
    jumps[:-1] |= vertical
    jumps[1:] |= vertical
    jumps[:, :-1] |= horizontal
    jumps[:, 1:] |= horizontal
    if not jumps.any():
        return jumps
    radius = int(np.ceil(3.0 * sigma.max()))
    return ndimage.distance_transform_edt(~jumps) <= radius


def solve_levels(observed, sigma, workers):
    """Every level any rule uses, solved once (C×H×W each)."""
    import concurrent.futures

    levels = sorted({level for rule in RULES for level in deconvolution.LayerPlan(sigma, rule).levels})
    channels = np.ascontiguousarray(np.moveaxis(observed / 255.0, 2, 0))
    with blas_threads.limited(), concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        solved = pool.map(lambda level: deconvolution.deconvolve_layer(channels, level, 420.0), levels)
        return dict(zip(levels, solved))


def compose_rule(sigma, rule, solutions):
    output, total = np.zeros((3,) + sigma.shape), np.zeros(sigma.shape)
    plan = deconvolution.LayerPlan(sigma, rule)
    for level in plan.levels:
        weight = plan.weight(level)
        deconvolution.compose(output, solutions[level], weight)
        total += weight
    return np.moveaxis(np.clip(output / total, 0, 1), 0, 2)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dmenet.bench deblur", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(SHARED_DATA),
                        help="the shared data folder (default ../shared/data)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per mode, best kept (default 3)")
    parser.add_argument("--workers", type=int, default=None, help="threads (default: the CPUs available)")
    parser.add_argument("--skip-quality", action="store_true", help="time only; skip the synthetic quality table")
    parser.add_argument("--skip-speed", action="store_true", help="quality table only")
    args = parser.parse_args(argv)
    data = pathlib.Path(args.data)
    workers = args.workers or deconvolution.default_workers()
    if args.repeats < 1 or workers < 1:
        print("error: --repeats and --workers must be ≥ 1")
        return 2
    if not args.skip_speed:
        if not (data / "deconv_reference").is_dir():
            print(f"error: {data}/deconv_reference not found; pass --data")
            return 2
        speed(data, workers, args.repeats)
    if not args.skip_quality:
        quality(data, workers)
    return 0
