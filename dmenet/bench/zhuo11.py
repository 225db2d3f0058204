"""Zhuo & Sim speed and accuracy: seconds per stage, the ratio to the official code, the error against it.

    python -m dmenet.bench zhuo11 [--image PHOTO] [--repeats 3] [--process] [--direct]

Without --image it runs the author's own example (../shared/data/zhuo11_reference/bird_input.png,
800×600) and compares every intermediate with the official run's (edge map, sparse map, full map);
without that folder it uses scikit-image's bundled "coffee" photo resized to 640×427, the size of most
CUHK photos, and only times it. Prints the best run's seconds per stage (the Laplacian is built in a
second thread beside the edge stages), its CPU time, the ratio to the official code's time (55.2 s for
the bird: GNU Octave on 2 shared cores, ZHUO11.md; for another photo ``official_seconds``, 27.7 s for
640×427 as the spec's ≈ 28 s) and, with --process, the median and best wall time of a whole
``infer.py --method zhuo11`` process on the photo (start-up and file writing included) and its ratio.
--direct also solves with the direct reference solver (slow) and reports the difference.
"""
import argparse
import json
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from dmenet.bench import SHARED_DATA

REFERENCE_DIR = SHARED_DATA / "zhuo11_reference"
OFFICIAL_SECONDS_640x427 = 28.0  # ZHUO11.md: the official code under Octave on 2 shared cores


def official_seconds(height, width):
    """The official run's time for a photo, from the split of the bird's (ZHUO11.md; docs/zhuo11.md, Speed).

    Its Laplacian loop (29 s for the bird's 477 204 windows) grows with the 3×3 windows, its direct
    solve (25 s for 480 000 pixels) as pixels^1.5, like a 2-D sparse Cholesky, and ≈ 0.5 s is the
    rest: 27.7 s for 640×427 (the spec: ≈ 28 s) and 10.6 s for 420×279 (stages measured in Octave:
    10.2–10.6 s). Scaling by pixels alone would credit small photos with up to 15 % more.
    """
    windows = max(height - 2, 0) * max(width - 2, 0)
    return 29.0 * windows / 477_204 + 25.0 * (height * width / 480_000) ** 1.5 + 0.5
DEFAULT_SIZE = (427, 640)


def _photo(path):
    """(uint8 photo, its name, reference dict or None, official seconds)."""
    if path:
        from dmenet.files.images import read_image

        photo = np.clip(np.round(read_image(path) * 255.0), 0, 255).astype(np.uint8)
        return photo, str(path), None, official_seconds(*photo.shape[:2])
    archive = REFERENCE_DIR / "bird_example.npz"
    if archive.is_file():
        with np.load(archive) as data:
            reference = {key: data[key] for key in data.files}
        official = json.loads((REFERENCE_DIR / "bird_example.json").read_text())["seconds"]["defocusEstimation"]
        return reference["image_rgb_u8"], "the author's bird example (zhuo11_reference)", reference, official
    from skimage.data import coffee
    from skimage.transform import resize

    photo = resize(coffee(), DEFAULT_SIZE, anti_aliasing=True, preserve_range=True)
    photo = np.clip(np.round(photo), 0, 255).astype(np.uint8)
    return photo, "skimage coffee resized to 640×427", None, OFFICIAL_SECONDS_640x427


def _accuracy(result, reference):
    kept = result.intermediates
    lines = [f"edge map: {int((kept['edgeMap'] != reference['edgeMap']).sum())} pixels differ "
             f"(of {int(reference['edgeMap'].sum())} edge pixels)"]
    sparse = kept["sDMap"].astype(np.float32)
    lines.append(f"sparse map: support differs at {int(((sparse > 0) != (reference['sDMap'] > 0)).sum())} pixels, "
                 f"{int((sparse != reference['sDMap']).sum())} float32 values differ, "
                 f"max |Δ| {np.abs(kept['sDMap'] - reference['sDMap']).max():.1e}")
    error = np.abs(result.sigma.astype(np.float64) - reference["fDmap"])
    lines.append(f"full map: mean |Δσ| {error.mean():.1e} px, max {error.max():.1e} px (targets 1e-3 / 1e-2)")
    return lines


def _process_seconds(photo):
    """Wall time of a whole ``infer.py --method zhuo11`` process on the photo (PNG input)."""
    from dmenet.files.images import write_png

    with tempfile.TemporaryDirectory() as folder:
        image = pathlib.Path(folder) / "photo.png"
        write_png(image, photo)
        started = time.perf_counter()
        completed = subprocess.run([sys.executable, "-m", "dmenet.cli.infer", str(image), "--method", "zhuo11",
                                    "--quiet", "-o", str(pathlib.Path(folder) / "out")],
                                   capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"infer.py failed: {completed.stderr.strip()}")
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", help="photo to time (default: the author's example, or a bundled 640×427 photo)")
    parser.add_argument("--repeats", type=int, default=3, help="runs; the fastest is reported (default: %(default)s)")
    parser.add_argument("--process", action="store_true", help="also time a whole infer.py --method zhuo11 process")
    parser.add_argument("--direct", action="store_true", help="also solve with the direct reference solver")
    args = parser.parse_args(argv)
    from dmenet.cli.runtime import cpu_description
    from dmenet.zhuo11.pipeline import estimate_zhuo11

    photo, name, reference, official = _photo(args.image)
    print(cpu_description())
    print(f"photo: {name} ({photo.shape[1]}×{photo.shape[0]})")
    best = None
    for _ in range(max(1, args.repeats)):
        wall, cpu = time.perf_counter(), time.process_time()
        result = estimate_zhuo11(photo, keep_intermediates=True)
        run = (time.perf_counter() - wall, time.process_time() - cpu, result)
        if best is None or run[0] < best[0]:
            best = run
    total, cpu, result = best
    notes = {"laplacian": "  (beside the edge stages)", "propagation_setup": "  (beside the bilateral)",
             "propagation_solve": f"  ({result.intermediates.get('solver_iterations')} CG iterations)"}
    for stage, seconds in result.stage_seconds.items():
        print(f"  {stage:<20s} {seconds:7.2f} s{notes.get(stage, '')}")
    print(f"  {'total':<20s} {total:7.2f} s  (CPU {cpu:.2f} s; best of {max(1, args.repeats)}); "
          f"official {official:.1f} s → {official / total:.1f}× faster")
    if args.process:
        seconds = sorted(_process_seconds(photo) for _ in range(max(1, args.repeats)))
        median = float(np.median(seconds))
        print(f"  whole infer.py --method zhuo11 process: median {median:.2f} s, best {seconds[0]:.2f} s of "
              f"{len(seconds)} → {official / median:.1f}× faster than the official {official:.1f} s")
    if reference is not None:
        for line in _accuracy(result, reference):
            print(line)
    if args.direct:
        started = time.perf_counter()
        direct = estimate_zhuo11(photo, solver="direct")
        error = np.abs(direct.sigma.astype(np.float64) - result.sigma)
        print(f"direct solver: {time.perf_counter() - started:.1f} s; multigrid vs direct mean |Δσ| {error.mean():.1e}, "
              f"max {error.max():.1e}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0
