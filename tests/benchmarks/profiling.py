"""Launch a kybern command under cProfile, for the benchmarks' ``KYBERN_BENCH_PROFILE`` options.

Wall-clock profiles of a loaded server blame whatever waits: write() syscalls that block and
the GIL handed back and forth show up as the cost of the code around them. With
``KYBERN_BENCH_PROFILE_CPU=1`` the profile is timed by the main thread's CPU clock instead,
so each function is charged only the CPU it used.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_CPU_PROFILE = """
import cProfile, runpy, sys, time
out, exe = sys.argv[1], sys.argv[2]
sys.argv = sys.argv[2:]
prof = cProfile.Profile(time.thread_time)
prof.enable()
try:
    runpy.run_path(exe, run_name="__main__")
finally:
    prof.disable()
    prof.dump_stats(out)
"""


def profiled_launch(profile: str | os.PathLike[str] | None) -> list[str]:
    """The argv prefix that runs the ``kybern`` CLI, under cProfile writing ``profile`` if set."""
    exe = str(Path(sys.executable).parent / "kybern")
    if not profile:
        return [exe]
    if os.environ.get("KYBERN_BENCH_PROFILE_CPU"):
        return [sys.executable, "-c", _CPU_PROFILE, str(profile), exe]
    return [sys.executable, "-m", "cProfile", "-o", str(profile), exe]
