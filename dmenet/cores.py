"""How many CPU cores this process may use."""
import os


def available_cores():
    """CPU cores this process may run on: its affinity mask where the OS has one, else the machine's count.

    Example:
        >>> available_cores() >= 1
        True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
