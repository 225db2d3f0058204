"""Park'17's error type: an input or photo the method cannot process, with the reason and what to do."""


class Park17Error(ValueError):
    """Bad input to a Park'17 stage (wrong shape, type or range) or a photo it cannot process."""
