"""The data layer shared by training and evaluation: finding files, pairing them by stem, checking
sizes as the images will be read (EXIF rotation applied), reading binary masks and SYNDOF σ maps.

Every problem is collected into one `DatasetError` that lists the files, so a bad set is reported
once, before any work starts.
"""
from dmenet.datasets.discovery import (
    LABEL_STEM_SUFFIXES,
    DatasetError,
    displayed_size,
    exif_orientation,
    files_by_stem,
    label_stem,
    pair_by_stem,
    problem_list,
    size_problem,
)
from dmenet.datasets.labels import (
    POLARITIES,
    SIGMA_STORAGE_SCALE,
    canonical_polarity,
    read_binary_mask,
    read_stored_sigma,
)

__all__ = [
    "LABEL_STEM_SUFFIXES", "DatasetError", "displayed_size", "exif_orientation", "files_by_stem", "label_stem", "pair_by_stem",
    "problem_list", "size_problem", "POLARITIES", "SIGMA_STORAGE_SCALE", "canonical_polarity", "read_binary_mask",
    "read_stored_sigma",
]
