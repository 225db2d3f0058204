"""DMENet: deep defocus map estimation using domain adaptation (Lee et al., CVPR 2019), in Keras 3."""

__version__ = "0.1.0"
