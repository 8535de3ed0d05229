"""The line protocol between `scripts/benchmark.py` and its worker processes, and what both sides share.

Each framework runs in its own process so that neither's thread pools, allocators or compilation caches
affect the other. A worker is started with a JSON spec (argv[1]), builds its model, runs its warm-up steps
and reports `ready`; then the parent asks it, alternately with the peer's worker, to time blocks of steps
(`time`), and finally to `exit`, when it reports its peak memory. Messages are single JSON lines on stdout
prefixed by `MARK`, so anything a library prints there is ignored.
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import ml_collections

MARK = "@@xclip-benchmark "
INPUTS_FILE = "inputs.npz"  # videos (B, T, H, W, 3) uint8, labels (B,) int32, tokens (K, 77) int32

# Dense bf16 peak per chip (datasheets), matched against the device kind (jax) or device name (torch).
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "GH200": 989.0, "A100": 312.0, "L4": 121.0, "TPU v4": 275.0,
               "TPU v5 lite": 197.0, "TPU v5e": 197.0, "TPU v5p": 459.0, "TPU v6 lite": 918.0}


def official_recipe() -> ml_collections.ConfigDict:
  """The X-CLIP optimizer settings both sides train with (lr, 10x for the new modules, weight decay, betas,
  eps): the project's run-config defaults, which are the official recipe. Imports no JAX (the peer's
  process stays free of it)."""
  from xclip_jax import run_config

  return run_config.base_config().train


def peak_tflops(kind: str, override: float | None = None) -> float | None:
  """Peak FLOP/s (TFLOP/s) of one device: `override`, else the datasheet figure for its kind, else None."""
  if override:
    return override
  return next((value for name, value in PEAK_TFLOPS.items() if name.lower() in kind.lower()), None)


ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16")  # what decides CPU kernels


def host_cpu(cpuinfo: str = "/proc/cpuinfo") -> str:
  """The CPU as figures should name it: model name, vendor family/model (the model name of a cloud VM is often
  just "AMD EPYC"), and which of `ISA_FLAGS` it has, e.g. "AMD EPYC (AuthenticAMD family 25 model 17; avx2
  avx512f avx512_bf16)". Linux only; elsewhere the platform's processor string."""
  try:
    text = pathlib.Path(cpuinfo).read_text(encoding="utf-8")
  except OSError:
    import platform

    return platform.processor() or platform.machine()
  first = text.split("\n\n", 1)[0]
  fields = dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in first.splitlines()) if v)
  flags = set(fields.get("flags", "").split())
  isa = " ".join(name for name in ISA_FLAGS if name in flags) or "no AVX2"
  return (f"{fields.get('model name', '?')} ({fields.get('vendor_id', '?')} family {fields.get('cpu family', '?')} "
          f"model {fields.get('model', '?')}; {isa})")


def send(message: dict[str, Any]) -> None:
  sys.stdout.write(MARK + json.dumps(message) + "\n")
  sys.stdout.flush()


def peak_rss_bytes() -> int:
  """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Runner:
  """What a worker implements: build in `__init__`, then `step()` (asynchronous) and `sync()`."""

  device: str  # human-readable device name, "<count> x <kind> (<platform>)"
  dtype: str  # compute dtype actually used
  compile_seconds: float | None = None  # ahead-of-time compilation (part of the set-up), if any
  memory_kind: str  # "device" (accelerator allocator peak) or "rss" (host process peak)

  def step(self) -> Any:
    raise NotImplementedError

  def sync(self, result: Any) -> None:
    """Blocks until `result` (what the last `step` returned) is computed."""
    raise NotImplementedError

  def check_value(self, result: Any) -> list:
    """A small output of the first step to compare with the peer (same weights and inputs)."""
    raise NotImplementedError

  def peak_memory_bytes(self) -> int | None:
    raise NotImplementedError


def serve(build: Callable[[dict[str, Any]], Runner]) -> None:
  """Worker main loop: build, warm up, then answer `time` and `exit` commands from stdin."""
  spec = json.loads(sys.argv[1])
  try:
    start = time.perf_counter()
    runner = build(spec)
    init_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result = runner.step()
    runner.sync(result)
    first_step_seconds = time.perf_counter() - start
    check = runner.check_value(result)
    for _ in range(max(spec["warmup"] - 1, 0)):
      result = runner.step()
    runner.sync(result)
  except Exception as error:  # report set-up failures (e.g. out of memory) to the parent, then exit
    send({"event": "error", "message": f"{type(error).__name__}: {error}"})
    raise
  send({"event": "ready", "init_s": init_seconds, "first_step_s": first_step_seconds, "device": runner.device,
        "dtype": runner.dtype, "compile_s": runner.compile_seconds, "check": check,
        "xla_flags": os.environ.get("XLA_FLAGS", "")})
  for line in sys.stdin:
    command = json.loads(line)
    if command["cmd"] == "time":
      start, cpu_start = time.perf_counter(), time.process_time()
      for _ in range(command["steps"]):
        result = runner.step()
      runner.sync(result)
      send({"event": "timed", "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start,
            "steps": command["steps"]})
    elif command["cmd"] == "exit":
      send({"event": "done", "peak_memory_bytes": runner.peak_memory_bytes(), "memory_kind": runner.memory_kind})
      return
