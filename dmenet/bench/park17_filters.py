"""Speed and peak memory of the Park'17 filtering and propagation stages on a reference photo.

    python -m dmenet.bench.park17_filters [--case sample_0001] [--threads 1] [--repeats 3]

Runs sparse maps, rolling guidance, ProbJBF and propagation (Laplacian build, AMG setup and solve
timed separately) on the inputs of the official Octave run in ../shared/data/park17_reference,
prints wall and CPU seconds per stage (best of --repeats), the peak traced memory of each stage
(tracemalloc: NumPy/SciPy arrays) and the process's maximum resident set size, and the
error against the reference outputs.
"""
import argparse
import resource
import time
import tracemalloc

import numpy as np

from dmenet.bench import SHARED_DATA

REFERENCE_DIR = SHARED_DATA / "park17_reference"


def _measure(function, repeats):
    """(result, best wall s, CPU s of that run, peak traced MB of the first run)."""
    tracemalloc.start()
    result = function()
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    best = (float("inf"), 0.0)
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        best = min(best, (wall, cpu))
    return result, best[0], best[1], peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="sample_0001")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (threadpoolctl)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    path = REFERENCE_DIR / f"{args.case}.npz"
    if not path.is_file():
        print(f"error: {path} not found; this benchmark needs ../shared/data/park17_reference")
        return 2

    from threadpoolctl import threadpool_limits

    from dmenet.park17.prob_jbf import probability_joint_bilateral
    from dmenet.park17.rolling_guidance import rolling_guidance_filter
    from dmenet.park17.sparse_map import sparse_maps
    from dmenet.propagation import laplacian, solver

    with np.load(path) as archive:
        ref = {key: archive[key] for key in archive.files}
    height, width = ref["edgMap"].shape
    known = ref["edgMap"] != 0
    rows = []
    with threadpool_limits(limits=args.threads):
        def stage(name, function, error=None):
            result, wall, cpu, peak = _measure(function, args.repeats)
            rows.append((name, wall, cpu, peak, error(result) if error else ""))
            return result

        stage("sparse_maps", lambda: sparse_maps((height, width), ref["pos"], ref["label"], ref["confidence"]),
              lambda r: f"sps max|Δ| {np.abs(r[0] - ref['spsImg']).max():.1e}")
        stage("rolling_guidance", lambda: rolling_guidance_filter(ref["image_rgb_u8"] / 255.0),
              lambda r: f"max|Δ| {np.abs(r.astype(np.float64) - ref['rgfImg']).max():.1e}")
        stage("prob_jbf", lambda: probability_joint_bilateral(ref["spsImg"], ref["prbImg"], ref["rgfImg"][..., 0]),
              lambda r: f"max|Δ| {np.abs(r - ref['jbfImg']).max():.1e}")
        guide = ref["rgfImg"].astype(np.float64)
        data_weight = 0.005 * known.ravel()
        system = stage("laplacian_build", lambda: laplacian.laplacian_csr(guide, 1e-5, extra_diagonal=data_weight))
        rhs = data_weight * ref["jbfImg"].ravel()
        # the machine's speed for this matrix: one CSR matrix–vector product (the solver's unit of work)
        stage("1 matvec (unit)", lambda: system @ rhs)
        hierarchy = stage("amg_setup", lambda: solver._amg_hierarchy(system, guide))
        stage("amg_solve", lambda: solver._solve_amg(system, hierarchy, rhs, 1e-6)[0],
              lambda r: f"max|Δ| {np.abs(r - ref['dnsImg'].ravel()).max():.1e}")

        def full():
            return solver.propagate(ref["rgfImg"], ref["jbfImg"], known)

        stage("propagate (total)", full,
              lambda r: f"max|Δ| {np.abs(r.astype(np.float64) - ref['dnsImg']).max():.1e} "
                        f"mean {np.abs(r.astype(np.float64) - ref['dnsImg']).mean():.1e}")
    print(f"{args.case} {height}×{width}, threads={args.threads}, best of {args.repeats}")
    print(f"{'stage':<20}{'wall s':>8}{'cpu s':>8}{'peak MB':>9}  vs reference")
    for name, wall, cpu, peak, error in rows:
        print(f"{name:<20}{wall:>8.2f}{cpu:>8.2f}{peak:>9.0f}  {error}")
    matvec_cpu = next(row[2] for row in rows if row[0].startswith("1 matvec"))
    amg_cpu = next(row[2] for row in rows if row[0].startswith("amg"))
    if matvec_cpu > 0:
        print(f"AMG setup+solve = {amg_cpu / matvec_cpu:.0f} matvecs of the {system.nnz}-entry system (CPU time)")
    print(f"max RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
