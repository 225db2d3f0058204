"""Training data: finding and validating the three sets (datasets), augmentation, tf.data streams."""
from dmenet.pipelines.datasets import (
    DatasetError,
    RealLabelledSet,
    RealUnlabelledSet,
    SyndofSet,
    cuhk_set,
    real_labelled_set,
    real_unlabelled_set,
    syndof_set,
)
from dmenet.pipelines.streams import label_encoding, training_dataset

__all__ = [
    "DatasetError", "RealLabelledSet", "RealUnlabelledSet", "SyndofSet", "cuhk_set", "label_encoding",
    "real_labelled_set", "real_unlabelled_set", "syndof_set", "training_dataset",
]
