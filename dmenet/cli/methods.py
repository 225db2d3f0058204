"""The two methods as the CLIs explain them in --help, said once."""
import textwrap

METHODS_HELP = (
    "Methods: dmenet (Lee et al., CVPR 2019) is a fully convolutional network that predicts the defocus "
    "blur at every pixel directly, as a Gaussian sigma of 0 to 7 px, trained on synthetic SYNDOF defocus "
    "with domain adaptation to real photos; it needs trained weights (train.py, or the official "
    "checkpoint). park17 (Park et al., CVPR 2017) classifies the blur of patches at image edges into 11 "
    "sigma classes from 0.5 to 2 px with a small CNN plus hand-crafted DCT, gradient and SVD features, "
    "then spreads the edge estimates over the image (bilateral filtering, matting Laplacian, weighted "
    "median); its official weights are public and it runs well on a CPU. zhuo11 (Zhuo & Sim, Pattern "
    "Recognition 2011) needs no network and no weights: it measures the blur at Canny edges from the ratio "
    "of gradients re-blurred at two scales, cleans it with a bilateral filter and spreads it with the matting "
    "Laplacian, exactly as the author's code does; a few seconds per photo on a CPU. All write sigma in pixels."
)
METHODS_HELP = textwrap.fill(METHODS_HELP, 100)
METHODS = ("dmenet", "park17", "zhuo11")
NETWORK_FREE_METHODS = ("zhuo11",)  # these must not import TensorFlow


def add_zhuo11_options(parser):
    """--zhuo11-* flags: the official demo's parameters, as options (defaults from Zhuo11Params)."""
    from dmenet.zhuo11.params import DEFAULT_PARAMS as ZHUO11

    group = parser.add_argument_group("zhuo11 (Zhuo & Sim 2011) parameters; defaults are the official demo's")
    group.add_argument("--zhuo11-edge-threshold", type=float, default=ZHUO11.edge_threshold, metavar="T",
                       help="Canny's high threshold, a fraction of the peak gradient (low = 0.4·T; default: %(default)s)")
    group.add_argument("--zhuo11-std", type=float, default=ZHUO11.reblur_std, metavar="S",
                       help="σ of the first re-blur; the second is 1.5·S (default: %(default)s)")
    group.add_argument("--zhuo11-lambda", type=float, default=ZHUO11.lam, metavar="L",
                       help="weight of the edge estimates in the matting-Laplacian propagation (default: %(default)s)")
    group.add_argument("--zhuo11-max-blur", type=float, default=ZHUO11.max_blur, metavar="SIGMA",
                       help="edge estimates above this are clamped to it, in px (default: %(default)s)")
    group.add_argument("--zhuo11-solver", choices=("auto", "amg", "direct"), default="auto",
                       help="propagation solver: multigrid CG to the tolerance, or the direct reference (slow; default: auto)")


def zhuo11_options(args):
    """The keyword arguments of ``load_predictor("zhuo11", ...)`` from the --zhuo11-* flags."""
    return {"edge_threshold": args.zhuo11_edge_threshold, "reblur_std": args.zhuo11_std, "lam": args.zhuo11_lambda,
            "max_blur": args.zhuo11_max_blur, "solver": args.zhuo11_solver}
