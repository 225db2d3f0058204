"""Compiled (numba) first pass of the joint weighted median: medians near the centre's own level.

It runs through numba (``dmenet.native_kernels``), imported on its first call.
"""
import numpy as np

from dmenet.native_kernels import kernel


@kernel()
def nearby_medians(padded_levels, padded_clusters, table, stride, radius, reach, y0, y1, margin, median, settled):
    """For rows y0…y1−1: the weighted median where it lies within ``reach`` levels of the centre's level g.

    One pass over each (2r+1)² window sums, in float64, the weights below g − reach and at each level
    g − reach … g + reach; the median is the first level whose balance 2·(weight ≤ level) − total is
    ≥ 0. A pixel is ``settled`` only if the balances that bracket its median (at the median and one
    level below) are further than ``margin``·total from 0: then any summation order, in float32 or
    float64, decides the same. The others (far medians, near-ties, exact ties) are left to the caller.

    Args:
        padded_levels: (H+2r)×(W+2r) int level image, edge-padded.
        padded_clusters: (H+2r)×(W+2r) int cluster image, padded with the zero-weight "outside" cluster.
        table: flat float32 (K+1)² weights, row = centre cluster, column = window pixel's cluster.
        stride: K + 1.
        radius: window radius r.
        reach: levels on either side of the centre's level that are histogrammed.
        y0, y1: the rows to process.
        margin: relative distance from 0 a balance needs to be decided here.
        median, settled: H×W outputs (int, bool), written for rows y0…y1−1 (median = g where unsettled).
    """
    size = 2 * radius + 1
    bins = 2 * reach + 1
    width = median.shape[1]
    histogram = np.empty(bins)
    for y in range(y0, y1):
        for x in range(width):
            guess = padded_levels[y + radius, x + radius]
            row = padded_clusters[y + radius, x + radius] * stride
            total = 0.0
            below = 0.0
            histogram[:] = 0.0
            for dy in range(size):
                for dx in range(size):
                    weight = np.float64(table[row + padded_clusters[y + dy, x + dx]])
                    offset = padded_levels[y + dy, x + dx] - guess + reach
                    total += weight
                    if offset < 0:
                        below += weight
                    elif offset < bins:
                        histogram[offset] += weight
            limit = margin * total
            previous = 2.0 * below - total  # balance just below the histogrammed levels
            found = False
            median[y, x] = guess
            if previous < -limit:
                cumulative = below
                for k in range(bins):
                    cumulative += histogram[k]
                    balance = 2.0 * cumulative - total
                    if balance >= 0:
                        median[y, x] = guess - reach + k
                        found = balance > limit and previous < -limit
                        break
                    previous = balance
            settled[y, x] = found
