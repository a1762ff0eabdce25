"""The host named in run summaries and benchmark records (timings compare only within one kind of host)."""

from __future__ import annotations

import os

from ftjax.hardware import host_cpu

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 avx512f amx_bf16 amx_tile

processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 avx512f amx_bf16 amx_tile
"""


def test_host_cpu_names_the_model_its_notable_instruction_sets_and_cores(tmp_path):
    (info := tmp_path / "cpuinfo").write_text(CPUINFO)
    assert host_cpu(info) == f"Intel(R) Xeon(R) Processor (AVX-512, AMX), {os.cpu_count()} cores"
    (info := tmp_path / "epyc").write_text("model name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2 avx512f\n")
    assert host_cpu(info) == f"AMD EPYC 9B14 (AVX-512), {os.cpu_count()} cores"


def test_host_cpu_without_cpuinfo_still_says_something(tmp_path):
    name = host_cpu(tmp_path / "missing")
    assert name.endswith(f", {os.cpu_count()} cores") and not name.startswith(",")
