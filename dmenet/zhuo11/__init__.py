"""Zhuo & Sim (Pattern Recognition 2011): defocus map estimation from a single image, exact to the author's code.

One module per stage, in the order of the official ``defocusEstimation.m`` (see ZHUO11.md): ``edges``
(grey image and MATLAB-style Canny), ``blur_ratio`` (gradients at two Gaussian scales and the blur σ
their ratio gives at edge pixels), ``bilateral`` (the sparse joint bilateral clean-up), then the
matting-Laplacian propagation shared with Park'17 (``dmenet.propagation``); ``pipeline`` runs them all
and ``predictor`` puts the method behind the CLI/API interface. No network, no TensorFlow.
"""
