"""Park, Tai, Cho, Kweon (CVPR 2017): multi-scale deep and hand-crafted features for defocus estimation.

One module per stage, in the order of the official pipeline (see PARK17.md): ``edges`` (V channel and
MATLAB-style Canny), ``features`` (multi-scale patches, DCT/gradient/SVD features), ``network`` (the
patch CNN + classifier), ``caffemodel`` (reading the released weights), ``rolling_guidance``,
``prob_jbf``, ``matting`` (matting-Laplacian propagation), ``weighted_median`` and ``pipeline``.
"""
