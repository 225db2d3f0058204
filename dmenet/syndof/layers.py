"""Depth-layer decomposition: unique depths far → near, their CoCs, and the merge of neighbouring
depths whose CoC is equal into one layer (represented by its farthest depth), as SYNDOF does."""
import dataclasses

import numpy as np


@dataclasses.dataclass
class LayerStack:
    """Layers ordered far → near. `index_map` gives each pixel's layer; no per-layer masks are kept."""

    index_map: np.ndarray  # H×W int32, 0 = farthest layer
    depths: np.ndarray  # per layer: its representative (farthest) depth
    cocs: np.ndarray  # per layer: CoC in px (0.1 px steps)
    unique_depths: np.ndarray  # all distinct input depths, far → near
    unique_cocs: np.ndarray  # their CoCs before merging

    @property
    def count(self):
        return len(self.depths)

    @property
    def depth_map(self):
        """The depth map after merging: each pixel carries its layer's depth."""
        return self.depths[self.index_map]

    @property
    def coc_map(self):
        return self.cocs[self.index_map]

    @property
    def first_sharp_layer(self):
        """Index of the farthest layer with CoC ≤ 1 (drawn without blur); occlusion fill starts after it.
        A stack with no sharp layer (possible outside SYNDOF, e.g. defocus magnification) gets `count`: no fill."""
        sharp = np.flatnonzero(self.cocs <= 1)
        return int(sharp[0]) if len(sharp) else self.count

    @property
    def focus_layer(self):
        """Index of the layer with CoC exactly 0 (the focused depth)."""
        return int(np.flatnonzero(self.cocs == 0)[0])

    def pixel_groups(self):
        """Per layer, the flat indices of its pixels (one sort, no H×W×L array)."""
        flat = self.index_map.ravel()
        if self.count <= 2**16 and flat.min() >= 0:
            # The same stable order, but numpy sorts 16-bit keys by radix sort, in linear time.
            order = np.argsort(flat.astype(np.uint16), kind="stable")
        else:
            order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(self.count + 1))
        return [order[bounds[i] : bounds[i + 1]] for i in range(self.count)]


def unique_far_to_near(depth):
    unique, inverse = np.unique(depth, return_inverse=True)
    return unique[::-1], (len(unique) - 1 - inverse).reshape(depth.shape)


def decompose(depth, lens):
    """Split `depth` (mm, already shifted) into CoC layers for `lens`."""
    unique_depths, unique_index = unique_far_to_near(depth)
    unique_cocs = lens.coc(unique_depths)
    starts = np.flatnonzero(np.concatenate([[True], np.diff(unique_cocs) != 0]))
    run_of_unique = np.cumsum(np.isin(np.arange(len(unique_cocs)), starts)) - 1
    index_map = run_of_unique[unique_index].astype(np.int32)
    return LayerStack(
        index_map=index_map,
        depths=unique_depths[starts],
        cocs=unique_cocs[starts],
        unique_depths=unique_depths,
        unique_cocs=unique_cocs,
    )
