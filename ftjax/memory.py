"""Peak memory of a run: the device's own counter where it keeps one, the process's peak RSS on CPU."""

from __future__ import annotations

import resource

import jax


def peak_memory() -> tuple[int, str]:
    """Peak bytes in use, the largest over this process's devices, or the process's peak RSS on CPU."""
    stats = [d.memory_stats() or {} for d in jax.local_devices()]
    peaks = [s["peak_bytes_in_use"] for s in stats if "peak_bytes_in_use" in s]
    if peaks:
        return max(peaks), "device peak_bytes_in_use (largest device)"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process peak RSS"
