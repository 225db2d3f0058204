"""Zhuo & Sim's error type: an input or photo the method cannot process, with the reason."""


class Zhuo11Error(ValueError):
    """Bad input to a Zhuo & Sim stage (wrong shape or parameter) or a photo it cannot process."""
