"""Freed heap goes back to the system: malloc_trim after a large collection."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from agent import memory

# Many 4 KiB blocks allocated in a worker thread (so in one of glibc's thread arenas, as the
# collectors' are), then all but every 64th freed: the survivors pin the arena's top, so glibc
# keeps the free pages between them until malloc_trim hands them back.
FRAGMENTED = textwrap.dedent("""
    import re, threading
    from pathlib import Path
    from agent import memory

    def rss_mb():
        return int(re.search(r"VmRSS:\\s+(\\d+)", Path("/proc/self/status").read_text())[1]) / 1024

    kept = []
    def churn():
        blocks = [bytearray(4096) for _ in range(40_000)]
        kept.extend(blocks[::64])
    worker = threading.Thread(target=churn)
    worker.start()
    worker.join()
    before = rss_mb()
    assert memory.trim()
    print(before - rss_mb())
""")


def test_trim_returns_freed_pages_of_a_fragmented_arena() -> None:
    out = subprocess.run([sys.executable, "-c", FRAGMENTED], capture_output=True, text=True,
                         timeout=60, check=True)
    assert float(out.stdout) > 100, out.stdout  # of the ~160 MB freed


def test_maybe_trim_runs_at_most_once_per_period() -> None:
    start = memory._last
    assert memory.maybe_trim(start + memory.TRIM_EVERY) is True
    assert memory.maybe_trim(start + memory.TRIM_EVERY + 1) is False
    assert memory.maybe_trim(start + 2 * memory.TRIM_EVERY + 1) is True


def test_the_first_render_after_start_trims() -> None:
    """Start-up (imports, the configuration's models, the first collections) leaves free
    heap behind: the first render hands it back rather than a minute later."""
    out = subprocess.run([sys.executable, "-c", "from agent import memory; "
                          "print(memory.maybe_trim(), memory.maybe_trim())"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["True", "False"]


def test_a_shrunken_exposition_trims_at_once() -> None:
    start = memory._last
    assert memory.maybe_trim(start + memory.TRIM_EVERY) is True  # a fresh period
    now = start + memory.TRIM_EVERY + 1
    assert memory.maybe_trim(now, size=5 << 20) is False  # a big textfile arrives
    assert memory.maybe_trim(now + 1, size=5 << 20) is False
    assert memory.maybe_trim(now + 2, size=(5 << 20) - 1000) is False, "a small change"
    assert memory.maybe_trim(now + 3, size=100_000) is True, "it went: trimmed now"
    assert memory.maybe_trim(now + 4, size=100_000) is False


# In a worker thread (its own glibc arena): a 2 MB block freed, which would raise glibc's
# thresholds, then 600 kB blocks made and freed: they must not stay at the arena's top.
THRESHOLDS = textwrap.dedent("""
    import re, sys, threading
    from pathlib import Path
    from agent import memory

    def rss_mb():
        return int(re.search(r"VmRSS:\\s+(\\d+)", Path("/proc/self/status").read_text())[1]) / 1024

    if sys.argv[1] == "tuned":
        assert memory.tune()
    def churn():
        big = bytearray(2 << 20)
        del big
        blocks = [bytearray(600_000) for _ in range(6)]
        del blocks
    before = rss_mb()
    worker = threading.Thread(target=churn)
    worker.start()
    worker.join()
    memory.trim()
    print(rss_mb() - before)
""")


def test_fixed_thresholds_give_freed_blocks_back() -> None:
    def held(mode: str) -> float:
        return float(subprocess.run([sys.executable, "-c", THRESHOLDS, mode], capture_output=True,
                                    text=True, timeout=60, check=True).stdout)
    assert held("tuned") < 1.0
    assert held("default") > 2.0, "glibc's own thresholds keep them (the test's premise)"


# Threads allocating at once, each its first block from glibc: how many arenas serve them
# (glibc's malloc_stats prints one "Arena N:" block per arena on stderr).
ARENAS = textwrap.dedent("""
    import ctypes, sys, threading
    from agent import memory

    if sys.argv[1] == "tuned":
        assert memory.tune()
    barrier, kept = threading.Barrier(6), []
    def allocate():
        barrier.wait()
        kept.extend(bytearray(100_000) for _ in range(20))
    threads = [threading.Thread(target=allocate) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ctypes.CDLL(None).malloc_stats()
""")


def test_threads_share_one_arena() -> None:
    def arenas(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", ARENAS, mode], capture_output=True,
                             text=True, timeout=60, check=True)
        return out.stderr.count("Arena ")
    assert arenas("tuned") == 1
    assert arenas("default") > 1, "glibc gives threads arenas of their own (the premise)"
