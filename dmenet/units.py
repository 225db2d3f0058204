"""How a network output in [0, 1] reads as defocus σ in pixels.

Two encodings exist and mixing them up was the commonest confusion with the original code:
- "normalized" (ours, SYNDOF today): map = σ / σ_max, σ_max = (max_coc − 1) / 4 (7 px for max_coc 29);
- "official" (the released DMENet_BDCS checkpoint, trained on an older SYNDOF): σ = max(0, (15·map − 1) / 2).
Every checkpoint carries its encoding, and every file the tools write states its unit.
"""
import dataclasses

import numpy as np

DEFAULT_MAX_COC = 29


def sigma_max_for(max_coc):
    """The largest Gaussian σ SYNDOF produces for a maximum circle of confusion (DESIGN §4)."""
    return (max_coc - 1) / 4.0


@dataclasses.dataclass(frozen=True)
class DefocusEncoding:
    kind: str = "normalized"
    sigma_max: float = sigma_max_for(DEFAULT_MAX_COC)

    def __post_init__(self):
        if self.kind not in ("normalized", "official"):
            raise ValueError(f"unknown defocus encoding {self.kind!r}; expected 'normalized' or 'official'")
        if not self.sigma_max > 0:
            raise ValueError(f"sigma_max must be positive, got {self.sigma_max}")

    def to_sigma(self, output):
        """Network output → σ in pixels."""
        output = np.asarray(output, np.float32)
        if self.kind == "official":
            return np.maximum(0.0, (15.0 * output - 1.0) / 2.0)
        return output * np.float32(self.sigma_max)

    def from_sigma(self, sigma):
        """σ in pixels → the network's target value."""
        sigma = np.asarray(sigma, np.float32)
        if self.kind == "official":
            return (2.0 * sigma + 1.0) / 15.0
        return sigma / np.float32(self.sigma_max)

    @property
    def description(self):
        if self.kind == "official":
            return "sigma_px = max(0, (15 * output - 1) / 2)  (official DMENet checkpoint)"
        return f"sigma_px = output * {self.sigma_max:g}  (normalized SYNDOF encoding)"

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        return cls(kind=values["kind"], sigma_max=float(values.get("sigma_max", sigma_max_for(DEFAULT_MAX_COC))))


@dataclasses.dataclass(frozen=True)
class PixelSigmaRange:
    """What a classical method's maps mean: σ in pixels already, spanning sigma_min … sigma_max nominally.

    The methods' units (``Park17Units``, ``Zhuo11Units``) set the range, their ``kind`` and a description.
    """

    sigma_min: float = 0.0
    sigma_max: float = 1.0
    kind: str = "sigma_px"

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_sigma(self, output):
        """The top of the range for output 1, like DMENet's encodings (used for colour scales)."""
        return self.sigma_min + np.asarray(output, np.float32) * np.float32(self.sigma_max - self.sigma_min)


NORMALIZED = DefocusEncoding()
OFFICIAL = DefocusEncoding("official", sigma_max=7.0)


def round_half_away(values):
    """MATLAB's round(): halves go away from zero (NumPy's rounds them to even)."""
    values = np.asarray(values, np.float64)
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def sigma_to_uint16(sigma, scale=10.0):
    """σ → uint16(σ·scale) as MATLAB stores it (scale 10 is the SYNDOF on-disk format)."""
    return np.clip(round_half_away(np.asarray(sigma, np.float64) * scale), 0, 65535).astype(np.uint16)
