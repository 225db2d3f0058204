"""The propagation's error type: an input it cannot solve for, with the reason."""


class PropagationError(ValueError):
    """Bad input to the matting-Laplacian propagation (shapes, no known pixel, bad parameters)."""
