"""SYNDOF generator benchmark: seconds and peak memory per image.

`python -m dmenet.bench syndof [--data ../shared/data] [--repeats 3] [--skip-full]`

Cases: the 360×248 Middlebury reference input (143 layers) at max_coc 29 with a fixed camera — the
speed target — timed against the plain full-frame compositor (`composite_reference`, one layer at a
time over the whole frame) in the same run; then the three official SYNDOF sample inputs at full and
half size with a seeded camera draw. Peak memory is what tracemalloc sees allocated during one
generation (NumPy buffers included), in a separate untimed run.
"""
import argparse
import json
import pathlib
import time
import tracemalloc

import numpy as np

from dmenet.syndof.compositing import composite, composite_reference
from dmenet.syndof.writer import downscale, load_pair
from dmenet.syndof.depth_io import DepthConversion
from dmenet.syndof.generator import synthesize

SAMPLES = {
    "Middlebury Adirondack": ("middleburry/2014/Adirondack-perfect/im0.png", "middleburry/2014/Adirondack-perfect/disp0.png", 10.0),
    "SYNTHIA 000000": ("SYNTHIA/SYNTHIA-SEQS-01-NIGHT/Stereo_Right/Omni_F/000000.png",
                       "SYNTHIA/SYNTHIA-SEQS-01-NIGHT/Stereo_Right/Omni_F/000000.png", 10.0),
    "Sintel market_2": ("MPI/market_2/frame_0001.png", "MPI/market_2/frame_0001.dpt", 1000.0),
}


def timed(function, repeats):
    """Best-of wall and CPU seconds."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), result


def peak_mb(function):
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m dmenet.bench syndof", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"),
                        help="the shared data folder (default ../shared/data)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case, best kept (default 3)")
    parser.add_argument("--max-coc", type=int, default=29)
    parser.add_argument("--skip-full", action="store_true", help="skip the full-size sample inputs")
    args = parser.parse_args(argv)
    data = pathlib.Path(args.data)
    if not (data / "syndof_reference").is_dir():
        print(f"error: {data}/syndof_reference not found; pass --data")
        return 2

    print("== speed target: Middlebury 360×248 reference input, f 50 mm, focus 2000 mm, max_coc", args.max_coc)
    reference = np.load(data / "syndof_reference" / "middlebury_adirondack_coc15.npz")
    octave = json.loads((data / "syndof_reference" / "middlebury_adirondack_coc15.json").read_text())["params"]
    image, depth = reference["input_image"], reference["depth_in"]
    sample = synthesize(image, depth, args.max_coc, f_mm=50.0, z_focal=2000.0)
    stack = sample.stack
    fast_wall, fast_cpu, fast = timed(lambda: composite(image, stack, args.max_coc), args.repeats)
    base_wall, base_cpu, base = timed(lambda: composite_reference(image, stack, args.max_coc), 1)
    print(f"layers {stack.count}, first sharp layer {stack.first_sharp_layer}")
    print(f"composite (ours)               wall {fast_wall:7.3f} s   cpu {fast_cpu:7.3f} s")
    print(f"composite_reference (baseline) wall {base_wall:7.3f} s   cpu {base_cpu:7.3f} s   speed-up ×{base_cpu / fast_cpu:.1f} (cpu)")
    print(f"max |ours − baseline| = {np.abs(fast - base).max():.2e}")
    end_to_end_wall, end_to_end_cpu, _ = timed(lambda: synthesize(image, depth, args.max_coc, f_mm=50.0, z_focal=2000.0), args.repeats)
    print(f"synthesize end to end          wall {end_to_end_wall:7.3f} s   cpu {end_to_end_cpu:7.3f} s")
    print(f"(recorded, not this machine: official generator under Octave, max_coc 15: {octave['wall_time_s']:.2f} s)")

    print("\n== official SYNDOF sample inputs, seeded camera draw, max_coc", args.max_coc)
    print(f"{'input':24s} {'size':>10s} {'layers':>6s} {'wall s':>8s} {'cpu s':>8s} {'peak MB':>8s}")
    root = data / "rgbd" / "syndof_samples"
    for name, (image_path, depth_path, scale) in SAMPLES.items():
        full_image, full_depth = load_pair(root / "image" / image_path, root / "depth" / depth_path, DepthConversion(scale=scale))
        sizes = [("half", 0.5)] + ([] if args.skip_full else [("full", 1.0)])
        for label, factor in sizes:
            if factor < 1:
                img, dep = downscale(full_image, full_depth, int(max(full_depth.shape) * factor))
            else:
                img, dep = full_image, full_depth

            def run():
                return synthesize(img, dep, args.max_coc, rng=np.random.default_rng(0))

            wall, cpu, result = timed(run, 1 if factor == 1 else args.repeats)
            peak = peak_mb(run)
            size = f"{dep.shape[1]}×{dep.shape[0]}"
            print(f"{name + ' ' + label:24s} {size:>10s} {result.stack.count:6d} {wall:8.3f} {cpu:8.3f} {peak:8.1f}")
    return 0
