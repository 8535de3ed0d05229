"""The plan as text for people (the JSON form is `PlanReport.to_dict()`).

It formats a `planner.PlanReport` without importing the planner, which imports this module (compile_only).
"""

from __future__ import annotations

from typing import Any

from xclip_jax.planning import chips, compiled, hlo_collectives

GIB = chips.GIB


def gib(value: float | None) -> str:
  return "-" if value is None else f"{value / GIB:.2f}"


def _memory_rows(programs: list[compiled.ProgramReport]) -> list[str]:
  header = f"  {'program':<38}{'args':>7}{'outputs':>9}{'aliased':>9}{'temps':>8}{'code':>7}{'total':>8}" \
           f"{'+state':>8}{'limit':>8}  verdict"
  rows = [header]
  for p in programs:
    limit = gib(p.limit_bytes) if p.limit_bytes else "-"
    if p.refusal is not None:
      verdict = "DOES NOT FIT (the compiler refused)"
      rows.append(f"  {p.name:<38}{'':>48}{gib(p.required_bytes):>8}{limit:>8}  {verdict}")
      rows.append(f"      {p.refusal}")
      continue
    verdict = {True: "fits", False: "DOES NOT FIT by the memory analysis (the compiler itself accepted it)",
               None: "no memory limit known"}[p.fits]
    resident = gib(p.resident_bytes) if p.resident_bytes else ""
    rows.append(f"  {p.name:<38}{gib(p.argument_bytes):>7}{gib(p.output_bytes):>9}{gib(p.alias_bytes):>9}"
                f"{gib(p.temp_bytes):>8}{gib(p.code_bytes):>7}{gib(p.total_bytes):>8}{resident:>8}{limit:>8}"
                f"  {verdict}")
  return rows


def collectives_line(summary: hlo_collectives.CollectiveSummary | None) -> str:
  if summary is None:
    return "-"
  parts = [f"{kind} {summary.count[kind]}x {summary.bytes[kind] / GIB:.3f} GiB" for kind in hlo_collectives.KINDS
           if summary.count[kind]]
  return ", ".join(parts) if parts else "none"


def format_report(report: Any, title: str = "") -> str:
  """The text of a `planner.PlanReport`."""
  c = report.config
  lines = [f"Plan{' for ' + title if title else ''} on {report.target}",
           f"Run: {c['variant']}, {c['frames']} frames at {c['image_size']} px, global batch {c['global_batch']} "
           f"({c['per_chip_batch']} per chip, gradient accumulation {c['grad_accum_steps']}), remat "
           f"{'on' if c['remat'] else 'off'}, scan_layers {'on' if c['scan_layers'] else 'off'}, {c['dtype']}, mixup "
           f"{c['mixup']}, {c['num_classes']} classes, text tower {'trained' if c['train_text'] else 'frozen'}, "
           f"mesh {c['mesh']}",
           "Every figure below is the compiler's or the roofline's estimate, not a measurement.",
           "",
           "Memory per chip (the compiler's memory analysis, GiB; +state: optimizer state resident beside the program)"]
  lines += _memory_rows(report.programs)
  lines.append(f"  State per chip (from its shardings): parameters {gib(report.parameter_bytes_per_chip)} GiB, "
               f"optimizer {gib(report.optimizer_bytes_per_chip)} GiB; whole state {gib(report.state_bytes_total)} GiB")
  verdict = {True: "fits", False: "DOES NOT FIT", None: "unknown (no memory limit for this device)"}[report.fits]
  lines.append(f"  Verdict: {verdict}")
  train = next((p for p in report.programs if p.name == "train step"), None)
  chips_count = report.config["chips"]
  if train is not None and train.refusal is None:
    lines.append("")
    analytic = report.analytic_flops_per_step / chips_count
    xla = train.flops
    ratio = f"; XLA / analytic = {xla / analytic:.3f}" if xla and analytic else ""
    loop_note = " (a loop body counted once)" if train.loops_with_trips else ""
    lines.append(f"FLOPs per step per chip: XLA cost analysis {_tflop(xla)}{loop_note}; xclip_jax.perf analytic "
                 f"{_tflop(analytic)} (with LayerNorm, no remat){ratio}; model FLOPs for MFU "
                 f"{_tflop(report.model_flops_per_step / chips_count)} (matmuls only)")
    lines.append("Collectives per step per chip (compiled HLO, loop trips counted): "
                 + collectives_line(train.collectives))
    if train.optimal_seconds and train.optimal_seconds > 0:
      lines.append(f"The TPU compiler's own step-time estimate (optimal_seconds): {train.optimal_seconds:.4f} s")
  r = report.roofline
  if r is not None:
    low, high = r.clips_per_s_per_chip
    lines.append(f"Roofline (published peaks; compute from {r.flops_source}):")
    lines.append(f"  compute {r.compute_s:.4f} s, HBM {r.hbm_s:.4f} s, interconnect {r.ici_s:.4f} s -> step "
                 f"{r.lower_s:.4f}-{r.upper_s:.4f} s ({r.bound}-bound); {low:.1f}-{high:.1f} clips/s per chip; "
                 f"MFU bound {r.mfu_bound:.1%}")
  b = report.input
  if b is not None:
    enough = "NOT enough: input-bound" if b.input_bound else "enough"
    lines.append(f"Input: at {high:.1f} clips/s per chip each host ({b.chips_per_host} chips) must decode and augment "
                 f"{b.clips_per_s_per_host:.0f} clips/s; at {b.decode_rate:g} clips per CPU-second per worker "
                 f"({b.decode_rate_source}) that is {b.cpus_needed_per_chip:.1f} CPUs per chip, against "
                 f"{b.vcpus_per_chip:.0f} vCPUs per chip on this host type ({b.vcpus_per_host} per host): {enough} "
                 f"(those vCPUs alone decode {b.input_bound_clips_per_s_per_chip:.0f} clips/s per chip).")
  if report.measured:
    m = report.measured
    lines.append(f"Measured on this machine ({m['steps']} steps after compiling): {m['step_seconds_median']:.4f} s per "
                 f"step (range {m['step_seconds_min']:.4f}-{m['step_seconds_max']:.4f}), "
                 f"{m['clips_per_s_per_device']:.1f} clips/s per device, peak memory "
                 f"{gib(m.get('peak_bytes_per_device'))} GiB per device")
  lines.append("")
  lines.append("Compile time: " + ", ".join(f"{p.name} {p.compile_seconds:.1f} s" + (" (cached)" if p.cached else "")
                                            for p in report.programs)
               + f"; whole plan {report.plan_seconds:.1f} s")
  lines += [f"Note: {note}" for note in report.notes]
  return "\n".join(lines)


def _tflop(value: float | None) -> str:
  return "-" if value is None else f"{value / 1e12:.3f} TFLOP"
