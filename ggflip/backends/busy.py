"""A warning when the machine is already busy before llama.cpp starts its threads.

llama.cpp's worker threads spin while they wait for each other, so when they share cores with
another heavy process (a second ggflip run, a build) every matrix product waits for the slowest
thread and a run can take ~10 times longer. The load average (runnable processes, averaged
over a minute) above the cores this process may use is the sign; the warning names the
`n_threads` setting to lower, once per process.
"""

from __future__ import annotations

import logging
import math
import os
import threading

from ggflip.config.models_toml import LlamaSettings

log = logging.getLogger("ggflip")
_warned = threading.Event()


def cores_available() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def busy_warning(settings: LlamaSettings, load: float, cores: int) -> str | None:
    """What to tell the user when `load` (the 1-minute load average) exceeds `cores`, else None."""
    if load <= cores:
        return None
    threads = settings.n_threads or cores
    free = max(1, cores - math.floor(load))
    given = f"n_threads = {settings.n_threads}" if settings.n_threads else "n_threads = 0 (all)"
    advice = (
        "wait for the other job"
        if threads <= free
        else f"set n_threads = {free} under [llama] in models.toml, or wait for the other job"
    )
    return (
        f"the machine is already busy (load average {load:.1f} on {cores} cores): llama.cpp's "
        f"{threads} thread{'s' if threads != 1 else ''} ({given}) will compete with the other "
        f"work and can run many times slower; {advice}"
    )


def warn_if_busy(settings: LlamaSettings) -> None:
    """Log `busy_warning` once per process, before the first model loads."""
    if _warned.is_set() or not hasattr(os, "getloadavg"):
        return
    _warned.set()
    message = busy_warning(settings, os.getloadavg()[0], cores_available())
    if message:
        log.warning(message)
