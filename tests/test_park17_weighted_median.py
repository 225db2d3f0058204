"""Park'17 joint weighted median (PARK17.md §11): pieces on small inputs, the whole filter on the
official reference run (exact on sample_0001)."""
import json

import numpy as np
import pytest

from dmenet.park17 import weighted_median as wm
from dmenet.park17.errors import Park17Error
from dmenet.park17.params import DEFAULT_PARAMS


def _reference(shared_data, case):
    base = shared_data / "park17_reference" / case
    arrays = np.load(base.with_suffix(".npz"))
    meta = json.loads(base.with_suffix(".json").read_text())
    return arrays, meta


class _Necklace:
    """The mex's doubly linked list over indices 1…n−1 with 0 as the head: inserts go to the front."""

    def __init__(self, size):
        self.forward = [0] * size
        self.backward = [0] * size

    def insert(self, i):
        after = self.forward[0]
        self.forward[0] = i
        self.forward[i] = after
        self.backward[after] = i
        self.backward[i] = 0

    def remove(self, i):
        before, after = self.backward[i], self.forward[i]
        self.forward[before] = after
        self.backward[after] = before

    def walk(self):
        i = 0
        while True:
            yield i
            i = self.forward[i]
            if i == 0:
                return


class _MexColumn:
    """One column's state in filterCore: joint histogram (level × cluster) with a linked list of the
    clusters present at each level, and per-cluster balance counts with their own linked list."""

    def __init__(self, value_levels, n_clusters):
        self.hist = np.zeros((value_levels, n_clusters), dtype=np.int64)
        self.level_lists = [_Necklace(n_clusters) for _ in range(value_levels)]
        self.counts = [0] * n_clusters
        self.count_list = _Necklace(n_clusters)

    def update_count(self, g, delta):
        if g:
            if self.counts[g] == 0:
                self.count_list.insert(g)
            elif self.counts[g] + delta == 0:
                self.count_list.remove(g)
        self.counts[g] += delta

    def add(self, level, g, delta):
        if self.hist[level, g] == 0 and g:
            self.level_lists[level].insert(g)
        self.hist[level, g] += 1
        self.update_count(g, delta)

    def drop(self, level, g, delta):
        self.hist[level, g] -= 1
        if self.hist[level, g] == 0 and g:
            self.level_lists[level].remove(g)
        self.update_count(g, delta)

    def shift(self, level, row, sign):
        """Move the cut across ``level``; returns the float32 weight change, summed in list order."""
        step = np.float32(0)
        for g in self.level_lists[level].walk():
            step = np.float32(step + np.float32(np.float32(2 * self.hist[level, g]) * row[g]))
            self.update_count(g, sign * 2 * int(self.hist[level, g]))
        return step


def _mex_walk_reference(levels, clusters, weights, radius, value_levels=256):
    """filterCore of jointWMF.h as a plain loop: joint histogram and per-cluster balance counts kept
    with the mex's linked lists, balances summed in float32 in the lists' order."""
    height, width = levels.shape
    f32 = np.float32
    out = np.empty_like(levels)
    for x in range(width):
        column = _MexColumn(value_levels, weights.shape[0])
        cut = -1
        cols = range(max(0, x - radius), min(width, x + radius + 1))
        for i in range(min(height, radius + 1)):
            for j in cols:
                column.add(levels[i, j], clusters[i, j], -1)
        for y in range(height):
            row = weights[clusters[y, x]]
            balance = f32(0)
            for g in column.count_list.walk():
                balance = f32(balance + f32(f32(column.counts[g]) * row[g]))
            if balance > 0:
                while balance > 0 and cut:
                    balance = f32(balance - column.shift(cut, row, -1))
                    cut -= 1
            elif balance < 0:
                while balance < 0 and cut != value_levels - 1:
                    balance = f32(balance + column.shift(cut + 1, row, 1))
                    cut += 1
            out[y, x] = cut
            if y + radius + 1 < height:
                for j in cols:
                    level = levels[y + radius + 1, j]
                    column.add(level, clusters[y + radius + 1, j], 1 if level <= cut else -1)
            if y - radius >= 0:
                for j in cols:
                    level = levels[y - radius, j]
                    column.drop(level, clusters[y - radius, j], -1 if level <= cut else 1)
    return out


def test_default_parameters_are_the_official_ones():
    p = DEFAULT_PARAMS
    assert (p.wmf_radius, p.wmf_sigma, p.wmf_value_levels, p.wmf_guide_levels, p.wmf_iterations) == (
        5, 0.25, 256, 256, 3)


def test_uint8_guide_rounds_half_away_and_rescales_sigma():
    guide = np.zeros((1, 4, 3))
    guide[0, :, 0] = [0.0, 0.5 / 255, 1.5 / 255, 1.0]  # .5 steps go up (MATLAB), not to even
    guide_u8, sigma = wm.matlab_uint8_guide(guide, 0.25)
    assert guide_u8[0, :, 0].tolist() == [0, 1, 2, 255]
    assert sigma == pytest.approx(0.25 * 255)


def test_quantisation_groups_and_representatives():
    rng = np.random.default_rng(0)
    values = rng.gamma(2.0, 1.0, size=(40, 50)).astype(np.float32)
    index, reps = wm._quantise_values(values, 16)
    assert len(reps) <= 16 and index.min() == 0 and index.max() == len(reps) - 1
    flat, idx = values.ravel(), index.ravel()
    for group, rep in enumerate(reps):
        members = np.sort(flat[idx == group])
        assert members.size > 0
        # representative = lower-middle element of the group in sorted order
        assert rep == members[(members.size - 1) >> 1]
    # groups are contiguous runs of the sorted values
    order = np.argsort(flat, kind="stable")
    assert np.all(np.diff(idx[order]) >= 0)


def test_quantisation_keeps_few_separated_values():
    values = np.array([[0.5, 0.8, 1.1], [1.1, 0.5, 0.8]], dtype=np.float32)
    index, reps = wm._quantise_values(values, 256)
    assert reps.tolist() == pytest.approx([0.5, 0.8, 1.1])
    assert np.array_equal(reps[index], values)


def test_opencv_rng_double_uses_two_draws_high_word_first():
    a, b = wm.OpenCvRng(), wm.OpenCvRng()
    high, low = b.next_u32(), b.next_u32()
    assert a.next_double() == float((high << 32) | low) * 2.0**-64
    assert 0.0 <= a.next_double() < 1.0
    # multiply-with-carry step from the fresh state 0xffffffff
    assert wm.OpenCvRng().next_u32() == (0xFFFFFFFF * 4164903690) & 0xFFFFFFFF


def test_kmeans_centres_are_member_means_and_weights_are_symmetric():
    rng = np.random.default_rng(1)
    samples = np.unique(rng.integers(0, 64, size=(300, 3)), axis=0)
    labels, centres = wm._kmeans_one_update(samples, 20, wm.OpenCvRng())
    assert set(labels.tolist()) == set(range(20))
    for k in range(20):
        members = samples[labels == k]
        expected = members.sum(axis=0).astype(np.float32) * (np.float32(1) / np.float32(len(members)))
        np.testing.assert_array_equal(centres[k], expected)
    weights = wm._cluster_weights(centres, 40.0)
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(weights, weights.T)
    np.testing.assert_array_equal(np.diag(weights), 1.0)
    assert np.all((weights > 0) & (weights <= 1))


def test_kmeans_with_as_many_clusters_as_colours_keeps_every_colour():
    samples = np.array([[0, 0, 0], [0, 0, 5], [3, 1, 2], [63, 63, 63]])
    labels, centres = wm._kmeans_one_update(samples, 4, wm.OpenCvRng())
    np.testing.assert_array_equal(centres[labels], samples.astype(np.float32))


def _fragile_pixels(levels, clusters, weights, radius, median_levels):
    """Pixels whose balance just below or at its walk result is within float32 rounding of 0 in
    float64: there the mex's float32 order of additions decides (PARK17.md §11, exact ties reached
    by a walk, tiny weights absorbed by big ones)."""
    height, width = levels.shape
    fragile = np.zeros(levels.shape, dtype=bool)
    for y in range(height):
        for x in range(width):
            rows = slice(max(0, y - radius), y + radius + 1)
            cols = slice(max(0, x - radius), x + radius + 1)
            window = levels[rows, cols].ravel()
            w = weights[clusters[y, x], clusters[rows, cols].ravel()].astype(np.float64)
            total = w.sum()
            for cut in (median_levels[y, x] - 1, median_levels[y, x], median_levels[y, x] + 1):
                balance = 2 * w[window <= cut].sum() - total
                fragile[y, x] |= abs(balance) <= 1e-5 * total
    return fragile


@pytest.mark.parametrize("seed,levels_range", [(0, 3), (1, 4), (2, 12), (3, 40)])
def test_filter_equals_a_port_of_the_mex_with_uniform_weights(seed, levels_range):
    """One cluster: every weight is 1 and float32 sums are exact, so the result must be the mex's
    exactly. Narrow level ranges give many exact ties (even windows at the border); wide ranges
    push medians far from the centre level (the histogram path)."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, levels_range, size=(13, 11))
    clusters = np.zeros(levels.shape, dtype=int)
    weights = np.ones((1, 1), dtype=np.float32)
    got = wm._filter_indices(levels, clusters, weights, radius=2, iterations=1, value_levels=levels_range)
    np.testing.assert_array_equal(got, _mex_walk_reference(levels, clusters, weights, 2, levels_range))


@pytest.mark.parametrize("seed,levels_range,n_clusters", [(4, 5, 2), (5, 12, 3), (6, 30, 4), (7, 60, 6)])
def test_filter_equals_a_port_of_the_mex_except_at_float32_ties(seed, levels_range, n_clusters):
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, levels_range, size=(24, 17))
    clusters = rng.integers(0, n_clusters, size=levels.shape)
    weights = wm._cluster_weights(rng.integers(0, 64, size=(n_clusters, 3)).astype(np.float32), 100.0)
    got = wm._filter_indices(levels, clusters, weights, radius=3, iterations=1, value_levels=levels_range)
    expected = _mex_walk_reference(levels, clusters, weights, 3, levels_range)
    differ = got != expected
    assert differ.sum() <= 2
    assert np.all(_fragile_pixels(levels, clusters, weights, 3, expected)[differ])
    assert np.all(np.abs(got - expected)[differ] == 1)


def test_filter_iterations_chain():
    rng = np.random.default_rng(5)
    levels = rng.integers(0, 6, size=(9, 10))
    clusters = np.zeros(levels.shape, dtype=int)
    weights = np.ones((1, 1), dtype=np.float32)
    twice = wm._filter_indices(levels, clusters, weights, radius=1, iterations=2, value_levels=6)
    once = _mex_walk_reference(levels, clusters, weights, 1, 6)
    np.testing.assert_array_equal(twice, _mex_walk_reference(once, clusters, weights, 1, 6))


def test_constant_values_stay_constant():
    rng = np.random.default_rng(2)
    values = np.full((30, 40), 0.73, dtype=np.float32)
    guide = rng.random((30, 40, 3))
    out = wm.joint_weighted_median(values, guide, radius=3, guide_levels=8)
    assert out.dtype == np.float32 and out.shape == values.shape
    np.testing.assert_array_equal(out, values)


def test_uniform_weights_give_the_window_median_or_one_level_below():
    """A constant guide makes every weight 1: the plain median of the clipped window, except that the
    walk approaches it from above one level too low (PARK17.md §11)."""
    rng = np.random.default_rng(3)
    values = rng.permutation(np.arange(35 * 30, dtype=np.float32)).reshape(35, 30) / 100
    guide = np.zeros(values.shape + (3,))
    out = wm.joint_weighted_median(values, guide, radius=2, sigma=1e-3, iterations=1)
    index, reps = wm._quantise_values(values, 256)
    out_index = np.searchsorted(reps, out)
    for y in range(2, 33):
        for x in range(2, 28):
            window = np.sort(index[y - 2:y + 3, x - 2:x + 3].ravel())
            median = window[12]  # 25 pixels: the 13th smallest
            assert out_index[y, x] in (median, median - 1)


def test_bad_inputs_raise_one_clear_error():
    with pytest.raises(Park17Error, match="H×W×3"):
        wm.joint_weighted_median(np.zeros((4, 5)), np.zeros((4, 5)))
    with pytest.raises(Park17Error, match="finite"):
        wm.joint_weighted_median(np.full((4, 5), np.nan), np.zeros((4, 5, 3)))


def test_guide_and_sigma_match_the_reference(shared_data):
    arrays, meta = _reference(shared_data, "sample_0001")
    guide_u8, sigma = wm.matlab_uint8_guide(arrays["rgfImg"], 0.25)
    assert sigma == pytest.approx(meta["wmf_sigma_after_rescale"], rel=1e-7)
    # rgfImg is stored as float32; Octave scaled the float64 original. Only pixels whose scaled value
    # lies within float32 rounding of a .5 boundary may round the other way.
    scaled = (arrays["rgfImg"].astype(np.float64) - arrays["rgfImg"].min()) * (
        255.0 / (float(arrays["rgfImg"].max()) - float(arrays["rgfImg"].min())))
    near_half = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-5
    differ = guide_u8 != arrays["wmf_guide_u8"]
    assert np.all(near_half[differ])
    assert differ.sum() <= 8
    assert np.abs(guide_u8.astype(int) - arrays["wmf_guide_u8"]).max() <= 1


def test_filter_is_exact_on_the_reference_run(shared_data):
    arrays, meta = _reference(shared_data, "sample_0001")
    out = wm.joint_weighted_median_u8(arrays["dnsImg"], arrays["wmf_guide_u8"], meta["wmf_sigma_after_rescale"])
    np.testing.assert_array_equal(out, arrays["rstImg"])


def test_public_entry_point_is_exact_on_the_second_reference_image(shared_data):
    """From the float32 rgfImg (guide rebuilt here) to rstImg; two first-row pixels of this image are
    exact ties that only the mex's float32 climb from cut −1 decides."""
    arrays, _ = _reference(shared_data, "sample_0002")
    out = wm.joint_weighted_median(arrays["dnsImg"], arrays["rgfImg"])
    np.testing.assert_array_equal(out, arrays["rstImg"])


@pytest.mark.parametrize("seed, levels_range, n_clusters", [(6, 30, 6), (7, 4, 3)])
def test_compiled_first_pass_equals_full_histograms_in_any_split(monkeypatch, seed, levels_range, n_clusters):
    """The compiled pass settles pixels whose median is within a level of the centre's; with a margin no
    balance can reach, every pixel goes through the float64 histograms instead, in small chunks."""
    rng = np.random.default_rng(seed)
    levels = rng.integers(0, levels_range, size=(70, 23))
    clusters = rng.integers(0, n_clusters, size=levels.shape)
    weights = wm._cluster_weights(rng.integers(0, 64, size=(n_clusters, 3)).astype(np.float32), 100.0)
    compiled = wm._filter_indices(levels, clusters, weights, radius=3, iterations=2, value_levels=levels_range)
    monkeypatch.setattr(wm, "_WORKERS", 3)
    np.testing.assert_array_equal(compiled, wm._filter_indices(levels, clusters, weights, radius=3, iterations=2,
                                                               value_levels=levels_range))
    monkeypatch.setattr(wm, "_FLOAT32_MARGIN", 10.0)
    monkeypatch.setattr(wm, "_BAND_PIXELS", 23 * 8)
    histograms = wm._filter_indices(levels, clusters, weights, radius=3, iterations=2, value_levels=levels_range)
    np.testing.assert_array_equal(compiled, histograms)


def test_image_smaller_than_the_window_and_zero_iterations():
    rng = np.random.default_rng(8)
    levels = rng.integers(0, 5, size=(3, 4))
    clusters = np.zeros(levels.shape, dtype=int)
    weights = np.ones((1, 1), dtype=np.float32)
    got = wm._filter_indices(levels, clusters, weights, radius=5, iterations=1, value_levels=5)
    np.testing.assert_array_equal(got, _mex_walk_reference(levels, clusters, weights, 5, 5))
    values = rng.random((6, 7)).astype(np.float32)
    unfiltered = wm.joint_weighted_median(values, rng.random((6, 7, 3)), iterations=0, value_levels=4)
    _, reps = wm._quantise_values(values, 4)
    assert set(np.unique(unfiltered)) <= set(reps.tolist())


def test_uint8_entry_point_rejects_a_float_guide():
    with pytest.raises(Park17Error, match="uint8"):
        wm.joint_weighted_median_u8(np.zeros((4, 5)), np.zeros((4, 5, 3)), 10.0)


def test_guide_clusters_prepared_beforehand_give_the_same_result():
    """The pipeline clusters the guide before the dense map exists (`cluster_guide`)."""
    rng = np.random.default_rng(12)
    guide = rng.random((20, 17, 3))
    values = rng.random((20, 17)).astype(np.float32)
    clusters = wm.cluster_guide(guide, sigma=0.25, guide_levels=16)
    direct = wm.joint_weighted_median(values, guide, radius=2, guide_levels=16)
    np.testing.assert_array_equal(wm.joint_weighted_median(values, guide, radius=2, guide_levels=16, guide_clusters=clusters), direct)
    with pytest.raises(Park17Error, match="guide_clusters"):
        wm.joint_weighted_median(values[1:], guide[1:], radius=2, guide_levels=16, guide_clusters=clusters)
