"""`python -m dmenet.bench {infer,syndof,train,park17,park17_filters,zhuo11,precision-cost,gpu-portable,deblur} [options]`: run one benchmark."""
import importlib
import sys

from dmenet.cli.runtime import quiet_start

BENCHMARKS = {
    "infer": "dmenet.bench.infer",
    "syndof": "dmenet.bench.syndof",
    "train": "dmenet.bench.train",
    "park17": "dmenet.bench.park17",
    "park17_filters": "dmenet.bench.park17_filters",
    "zhuo11": "dmenet.bench.zhuo11",  # no network: runs without TensorFlow
    "precision-cost": "dmenet.bench.precision_cost",
    "gpu-portable": "dmenet.bench.gpu_portable",  # B alone on any Keras backend (a GPU machine without TensorFlow)
    "deblur": "dmenet.bench.deblur",  # the all-in-focus deconvolution: speed vs the official run, quality on SYNDOF
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in BENCHMARKS:
        print(__doc__.strip())
        print("benchmarks: " + ", ".join(BENCHMARKS))
        return 2
    quiet_start("--verbose" in argv)  # before any benchmark imports TensorFlow
    module = importlib.import_module(BENCHMARKS[argv[0]])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
