"""How a benchmark is timed and how its extra memory is measured.

Timing: ``warmup`` untimed calls, then timed calls until ``repeats`` calls or, once at least
``min_repeats`` were timed, until the timed calls have used ``budget_s`` seconds. The methods of
one case are timed together, in rounds of one call each (``measure_interleaved``): a shared
machine's slow phases (seconds long on the project's VM, where one process measured 38 ms per
call and then 68-76 ms for the same call) then fall on every method alike instead of on
whichever was timed at the time, and the ratios between them hold. Each method stops on its own
rule, so a slow one does not hold back the samples of the fast ones. The result keeps every
sample; the reported figure is the median, and the spread is the interquartile range
(IQR = q3 - q1) as a percentage of the median. A result is flagged noisy when that spread, or
the CPU time other processes used during the timed rounds (``/proc/stat`` busy time minus this
process's own CPU time, as a share of all cores), exceeds ``noise_pct``. On CUDA every call is
followed by ``torch.cuda.synchronize()``.

Extra memory (CPU): tracemalloc does not see torch's allocations, and ``ru_maxrss`` cannot be
reset, so the probe resets the kernel's resident-set high-water mark instead (writing ``5`` to
``/proc/self/clear_refs``, Linux >= 4.0) after ``malloc_trim(0)`` has handed the allocator's
free pages back, runs the call once and reports ``VmHWM - VmRSS`` (before the call): the peak
of every page the call touched beyond what was resident, whoever allocated it (torch, oneDNN
scratchpads, JAX). It includes the call's outputs, saved activations and workspaces. Where
``clear_refs`` cannot be written the memory column is left empty. CUDA: the peak of
``torch.cuda.max_memory_allocated`` above the memory allocated before the call.
"""
import ctypes
import ctypes.util
import os
import statistics
import time
from dataclasses import dataclass, field

import torch


@dataclass
class Timing:
    samples: list = field(default_factory=list)  # seconds per call
    warmup: int = 0
    other_load_pct: float = 0.0                   # CPU used by other processes, % of all cores

    @property
    def median(self):
        return statistics.median(self.samples)

    @property
    def quartiles(self):
        if len(self.samples) < 2:
            return self.samples[0], self.samples[0]
        q1, _, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q1, q3

    @property
    def spread_pct(self):
        q1, q3 = self.quartiles
        return 100.0 * (q3 - q1) / self.median if self.median > 0 else 0.0

    def noisy(self, noise_pct):
        return self.spread_pct > noise_pct or self.other_load_pct > noise_pct


def synchronizer(device):
    """A function that waits for the device's queued work (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def _busy_seconds():
    """Busy CPU seconds of the whole machine (steal included), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return None
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds():
    times = os.times()
    return times.user + times.system


def measure(fn, *, warmup, repeats, min_repeats=3, budget_s=1.0, sync=lambda: None):
    """Time ``fn()`` (see the module docstring); returns a ``Timing``. Raises what ``fn`` raises."""
    timings, errors = measure_interleaved({"fn": fn}, warmup=warmup, repeats=repeats,
                                          min_repeats=min_repeats, budget_s=budget_s, sync=sync)
    if errors:
        raise errors["fn"]
    return timings["fn"]


def measure_interleaved(fns, *, warmup, repeats, min_repeats=3, budget_s=1.0,
                        sync=lambda: None, on_warmup=lambda name: None):
    """Time the callables of ``fns`` ({name: fn}) in rounds (see the module docstring):
    ``on_warmup(name)`` and the warm-up calls of each in turn, then ``on_warmup(None)`` and one
    timed call of each one still running per round. Returns ({name: Timing}, {name: the
    exception it raised}); a callable that raises is dropped from the rounds."""
    errors, samples, used = {}, {}, {}
    for name, fn in fns.items():
        on_warmup(name)
        try:
            for _ in range(warmup):
                fn()
                sync()
        except Exception as exc:
            errors[name] = exc
            continue
        samples[name], used[name] = [], 0.0
    on_warmup(None)

    def running(name):
        done = len(samples[name])
        return done < max(repeats, 1) and not (done >= min_repeats and used[name] > budget_s)

    busy0, own0, start = _busy_seconds(), _own_cpu_seconds(), time.perf_counter()
    active = list(samples)
    while active:
        for name in active:
            t0 = time.perf_counter()
            try:
                fns[name]()
                sync()
            except Exception as exc:
                errors[name] = exc
                del samples[name]
                continue
            elapsed = time.perf_counter() - t0
            samples[name].append(elapsed)
            used[name] += elapsed
        active = [name for name in active if name in samples and running(name)]
    wall = time.perf_counter() - start
    busy1, own1 = _busy_seconds(), _own_cpu_seconds()
    load = 0.0
    if busy0 is not None and busy1 is not None and wall > 0:
        foreign = (busy1 - busy0) - (own1 - own0)
        load = 100.0 * max(0.0, foreign) / (wall * (os.cpu_count() or 1))
    return {name: Timing(values, warmup, load) for name, values in samples.items()}, errors


_LIBC = None


def _malloc_trim():
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    try:
        _LIBC.malloc_trim(0)
    except AttributeError:  # not glibc
        pass


def _status_bytes(*keys):
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in keys:
                values[key] = int(rest.split()[0]) * 1024
    return values


def rss_probe_available():
    """True when the RSS high-water mark can be reset (Linux, /proc/self/clear_refs writable)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "VmHWM" in _status_bytes("VmHWM")
    except OSError:
        return False


def peak_extra_memory(fn, device):
    """(result of one ``fn()`` call, its peak extra memory in bytes or None)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        result = fn()
        torch.cuda.synchronize()
        return result, torch.cuda.max_memory_allocated() - before
    if not rss_probe_available():
        return fn(), None
    _malloc_trim()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = _status_bytes("VmRSS")["VmRSS"]
    result = fn()
    return result, max(0, _status_bytes("VmHWM")["VmHWM"] - before)
