"""Park, Tai, Cho, Kweon (CVPR 2017): multi-scale deep and hand-crafted features for defocus estimation.

One module per stage, in the order of the official pipeline (see PARK17.md): ``edges`` (V channel and
MATLAB-style Canny), ``features`` (multi-scale patches, DCT/gradient/SVD features), ``network`` (the
patch CNN + classifier), ``classify`` and ``shared_convolution`` (running it on a photo's patches),
``sparse_map``, ``rolling_guidance``, ``prob_jbf``, the matting-Laplacian propagation (shared with Zhuo &
Sim: ``dmenet.propagation``), ``weighted_median``; then ``pipeline`` (all stages), ``predictor`` (the CLI/API interface), ``training``
and ``demo``. The weights live in ``dmenet.weights.caffemodel`` and ``dmenet.weights.park17``.
"""
