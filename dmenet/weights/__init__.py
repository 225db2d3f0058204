"""Weights of every network: our checkpoints, the official DMENet npz, ImageNet VGG19, Park'17's caffemodel.

Modules: ``checkpoints`` (our ``.weights.h5`` with encoding metadata), ``pretrained`` (ImageNet VGG19 and
the official ``DMENet_BDCS.npz``), ``caffemodel`` (Caffe protobuf reader), ``park17`` (Park'17's
classifier weights: official file, checked download, conversion).
"""
