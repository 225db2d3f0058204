"""DMENet: deep defocus map estimation using domain adaptation (Lee et al., CVPR 2019), in Keras 3."""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
