"""Single-image defocus map estimation: DMENet (Lee et al., CVPR 2019) and Park et al. (CVPR 2017) in Keras 3.

The public API is imported on first use, so ``import dmenet`` loads neither TensorFlow nor any model::

    import dmenet
    sigma = dmenet.estimate_defocus("photo.jpg", method="park17")      # σ in pixels, H×W
"""

__version__ = "0.2.0"

_API = {
    "estimate_defocus": "dmenet.api",
    "load_predictor": "dmenet.api",
    "synthesize_defocus": "dmenet.api",
    "evaluate": "dmenet.api",
    "read_image": "dmenet.files.images",
    "deblur": "dmenet.applications.deblur",
    "magnify_defocus": "dmenet.applications.magnify",
    "depth_from_defocus": "dmenet.applications.depth",
    "blur_mask": "dmenet.applications.masks",
}
__all__ = sorted(_API)


def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'dmenet' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
