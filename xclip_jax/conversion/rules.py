"""Declarative mapping between PyTorch state-dict keys and our parameter tree.

A `Rule` ties one or more PyTorch tensors to one or more of our parameters with a transform in each
direction, so one table serves both import and export. `apply_rules` is strict: every source tensor is
used, every parameter filled, every shape checked, and all problems are reported together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

Path = tuple[str | int, ...]
Arrays = tuple[np.ndarray, ...]


class ConversionError(ValueError):
  """A checkpoint does not match the model: lists every missing, unused or mis-shaped tensor."""


@dataclasses.dataclass(frozen=True)
class Rule:
  sources: tuple[str, ...]  # PyTorch state-dict keys
  targets: tuple[Path, ...]  # paths in our parameter tree (nnx pure dict)
  to_jax: Callable[..., Arrays]
  to_torch: Callable[..., Arrays]


def _identity(*arrays: np.ndarray) -> Arrays:
  return arrays


def _transpose(*arrays: np.ndarray) -> Arrays:
  return tuple(np.asarray(a.T, order="C") for a in arrays)


def copy(source: str, target: Path) -> list[Rule]:
  return [Rule((source,), (target,), _identity, _identity)]


def transposed(source: str, target: Path) -> list[Rule]:
  """A bias-free matrix stored (out, in) by PyTorch and (in, out) by us."""
  return [Rule((source,), (target,), _transpose, _transpose)]


def conv_kernel(source: str, target: Path) -> list[Rule]:
  """PyTorch OIHW conv weight <-> Flax HWIO kernel."""
  return [Rule((source,), (target,),
               lambda w: (np.asarray(w.transpose(2, 3, 1, 0), order="C"),),
               lambda k: (np.asarray(k.transpose(3, 2, 0, 1), order="C"),))]


def linear(source: str, target: Path, bias: bool = True) -> list[Rule]:
  rules = transposed(f"{source}.weight", target + ("kernel",))
  return rules + (copy(f"{source}.bias", target + ("bias",)) if bias else [])


def layer_norm(source: str, target: Path) -> list[Rule]:
  return copy(f"{source}.weight", target + ("scale",)) + copy(f"{source}.bias", target + ("bias",))


def _split3(packed: np.ndarray) -> Arrays:
  return tuple(np.split(packed, 3, axis=0))


def packed_attention(source: str, target: Path) -> list[Rule]:
  """`nn.MultiheadAttention`: packed (3W, W) in_proj rows [q; k; v] <-> three (W, W) kernels."""
  qkv = tuple(target + (name,) for name in ("query", "key", "value"))
  return [
      Rule((f"{source}.in_proj_weight",), tuple(p + ("kernel",) for p in qkv),
           lambda w: _transpose(*_split3(w)),
           lambda q, k, v: (np.concatenate(_transpose(q, k, v), axis=0),)),
      Rule((f"{source}.in_proj_bias",), tuple(p + ("bias",) for p in qkv),
           _split3, lambda q, k, v: (np.concatenate([q, k, v], axis=0),)),
      *linear(f"{source}.out_proj", target + ("out",)),
  ]


def split_attention(source: str, target: Path, names: Sequence[str] = ("q_proj", "k_proj", "v_proj", "out_proj"),
                    qkv_bias: bool = True) -> list[Rule]:
  """Attention with separate q/k/v/out Linear layers (HuggingFace, and X-CLIP's prompt generator)."""
  ours = ("query", "key", "value", "out")
  rules = []
  for index, (theirs, mine) in enumerate(zip(names, ours, strict=True)):
    rules += linear(f"{source}.{theirs}", target + (mine,), bias=qkv_bias or index == 3)
  return rules


def format_path(path: Path) -> str:
  return "/".join(str(p) for p in path)


def apply_rules(state: Mapping[str, np.ndarray], rules: Iterable[Rule], expected: Mapping[Path, tuple[int, ...]],
                *, source_name: str, ignored: Iterable[str] = (), allow_unfilled: Callable[[Path], bool] | None = None
                ) -> dict[Path, np.ndarray]:
  """Maps PyTorch tensors to our parameters, float32.

  Args:
    state: PyTorch state dict as numpy arrays.
    rules: the layout of the source format for this model config.
    expected: shape of every parameter of the target model, by path.
    source_name: file name used in error messages.
    ignored: source keys known to carry no parameters (buffers, metadata).
    allow_unfilled: predicate for parameters that may stay unfilled (filled from a fresh init by the caller).

  Returns:
    Flat dict path -> array.

  Raises:
    ConversionError: naming every missing/unused source key, shape mismatch and unfilled parameter.
  """
  rules = list(rules)
  ignored = set(ignored)
  problems: list[str] = []
  params: dict[Path, np.ndarray] = {}
  used: set[str] = set()
  for rule in rules:
    missing = [key for key in rule.sources if key not in state]
    if missing:
      problems += [f"missing tensor '{key}' (for {', '.join(map(format_path, rule.targets))})" for key in missing]
      continue
    used.update(rule.sources)
    outputs = rule.to_jax(*(np.asarray(state[key], dtype=np.float32) for key in rule.sources))
    for path, array in zip(rule.targets, outputs, strict=True):
      want = expected.get(path)
      if want is None:
        raise AssertionError(f"conversion table names unknown parameter {format_path(path)}")
      if tuple(array.shape) != tuple(want):
        shapes = ", ".join(f"{k} {tuple(np.shape(state[k]))}" for k in rule.sources)
        problems.append(f"shape mismatch for {format_path(path)}: expected {tuple(want)}, got {tuple(array.shape)} "
                        f"from {shapes}")
        continue
      params[path] = array
  unused = sorted(set(state) - used - ignored)
  problems += [f"unused tensor '{key}' {tuple(np.shape(state[key]))}" for key in unused]
  unfilled = [p for p in expected if p not in params and not (allow_unfilled and allow_unfilled(p))]
  problems += [f"parameter {format_path(p)} {tuple(expected[p])} not filled by any tensor" for p in unfilled
               if not any(p in rule.targets for rule in rules)]
  if problems:
    shown = "\n  ".join(problems[:40])
    more = f"\n  ... and {len(problems) - 40} more" if len(problems) > 40 else ""
    raise ConversionError(f"{source_name} does not match the model ({len(problems)} problem(s)):\n  {shown}{more}")
  return params


def invert_rules(params: Mapping[Path, np.ndarray], rules: Iterable[Rule]) -> dict[str, np.ndarray]:
  """Our parameters -> PyTorch state dict (float32, contiguous), the inverse of `apply_rules`."""
  state: dict[str, np.ndarray] = {}
  for rule in rules:
    missing = [format_path(p) for p in rule.targets if p not in params]
    if missing:
      raise ConversionError(f"cannot export: parameters {missing} are missing.")
    outputs = rule.to_torch(*(np.asarray(params[p], dtype=np.float32) for p in rule.targets))
    for key, array in zip(rule.sources, outputs, strict=True):
      state[key] = np.asarray(array, order="C")
  return state
