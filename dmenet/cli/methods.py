"""The two methods as the CLIs explain them in --help, said once."""
import textwrap

METHODS_HELP = (
    "Methods: dmenet (Lee et al., CVPR 2019) is a fully convolutional network that predicts the defocus "
    "blur at every pixel directly, as a Gaussian sigma of 0 to 7 px, trained on synthetic SYNDOF defocus "
    "with domain adaptation to real photos; it needs trained weights (train.py, or the official "
    "checkpoint). park17 (Park et al., CVPR 2017) classifies the blur of patches at image edges into 11 "
    "sigma classes from 0.5 to 2 px with a small CNN plus hand-crafted DCT, gradient and SVD features, "
    "then spreads the edge estimates over the image (bilateral filtering, matting Laplacian, weighted "
    "median); its official weights are public and it runs well on a CPU. Both write sigma in pixels."
)
METHODS_HELP = textwrap.fill(METHODS_HELP, 100)
METHODS = ("dmenet", "park17")
