"""GPU use per process and per host through NVML, only when pynvml imports and a GPU exists.

pynvml is an optional dependency: without it (or without a GPU) every call returns nothing.
"""

from __future__ import annotations

from typing import Any


class Gpus:
    def __init__(self) -> None:
        self._nv: Any = None
        self.count = 0
        try:
            import pynvml

            pynvml.nvmlInit()
            self.count = int(pynvml.nvmlDeviceGetCount())
            self._nv = pynvml if self.count else None
        except Exception:  # ImportError, NVMLError (no driver / no GPU)
            self._nv = None
            self.count = 0

    @property
    def available(self) -> bool:
        return self._nv is not None

    def per_process(self) -> dict[int, tuple[float | None, int | None]]:
        """pid -> (SM utilisation %, memory bytes)."""
        nv = self._nv
        if nv is None:
            return {}
        out: dict[int, tuple[float | None, int | None]] = {}
        for i in range(self.count):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            try:
                for proc in nv.nvmlDeviceGetComputeRunningProcesses(h):
                    util, mem = out.get(proc.pid, (None, 0))
                    out[proc.pid] = (util, (mem or 0) + int(proc.usedGpuMemory or 0))
            except Exception:
                continue
            try:
                for s in nv.nvmlDeviceGetProcessUtilization(h, 0):
                    util, mem = out.get(s.pid, (None, None))
                    out[s.pid] = ((util or 0.0) + float(s.smUtil), mem)
            except Exception:
                continue
        return out

    def host(self) -> tuple[int, float | None, int | None]:
        """(GPU count, mean utilisation %, memory used bytes)."""
        nv = self._nv
        if nv is None:
            return 0, None, None
        utils, used = [], 0
        for i in range(self.count):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            utils.append(float(nv.nvmlDeviceGetUtilizationRates(h).gpu))
            used += int(nv.nvmlDeviceGetMemoryInfo(h).used)
        return self.count, sum(utils) / len(utils), used
