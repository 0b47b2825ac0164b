"""The dashboard's server log stays readable: a job thread's first memory measurement prints no kineto error,
the profiler's start/stop lines and torch's sparse "beta" warning are not written once per point."""
from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import threading, torch
from gemini_core.measure import measure_memory, warm_profiler
from gemini_core.native_noise import filter_native_noise_for_process
from gemini_core.runtimes.torch_kernels import SparseLinear
filter_native_noise_for_process()
warm_profiler()  # on the thread that imported torch, as the dashboard does
def job():
    model = torch.nn.Sequential(SparseLinear(torch.nn.Linear(8, 4)))
    measure_memory(model, {"input": torch.ones(2, 8)}, "cpu")
t = threading.Thread(target=job); t.start(); t.join()
print("job done", flush=True)
import sys; print("kept on stderr", file=sys.stderr, flush=True)
"""


def test_a_job_threads_measurement_leaves_only_what_matters_on_stderr():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "job done" in done.stdout
    assert "External init callback" not in done.stderr
    assert "USDT:" not in done.stderr and "profiler_start" not in done.stderr
    assert "Sparse CSR tensor support is in beta" not in done.stderr
    assert "kept on stderr" in done.stderr  # the filter drops noise, nothing else
