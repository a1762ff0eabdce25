"""The host a run or benchmark ran on, in words for its records: timings compare only within one kind of host,
and the project's machines are not always the same kind (CPU timings moved 25% between two 2-core hosts)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import jax

# Instruction sets that change which kernels a CPU framework can use (PyTorch's bfloat16 GEMMs use AMX tiles).
_NOTABLE_FLAGS = {"avx512f": "AVX-512", "amx_bf16": "AMX"}


def host_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The host CPU's model, notable instruction sets and logical core count, e.g.
    'Intel(R) Xeon(R) Processor (AVX-512, AMX), 2 cores'."""
    name, flags = "", set()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not name:
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:  # not Linux: the platform module's (coarser) name
        pass
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    notable = ", ".join(label for flag, label in _NOTABLE_FLAGS.items() if flag in flags)
    return f"{name}{f' ({notable})' if notable else ''}, {os.cpu_count()} cores"


def hardware() -> str:
    """The devices and the host, e.g. '1 x cpu (1 process) on Intel(R) Xeon(R) Processor (AVX-512, AMX), 2 cores'."""
    return (f"{jax.device_count()} x {jax.devices()[0].device_kind} ({jax.process_count()} process) "
            f"on {host_cpu()}")
