"""Collective traffic of a compiled (SPMD-partitioned) program, read from its HLO text, loops included.

Every all-gather, reduce-scatter, all-reduce, all-to-all and collective-permute (or its asynchronous `-start`
form, counted once) is counted with the bytes it moves per device, times how often its computation runs: the
body of a `while` loop runs its trip count times (scanned layers L times, gradient accumulation once per
micro-batch), nested loops multiply. TPU HLO does not annotate trip counts, so they are derived as XLA's
own loop analysis does: the induction variable's start value (a constant fed to the loop), its increment in
the body and the bound it is compared with in the condition. A loop whose count cannot be derived counts
once and is reported as such.

"Bytes" per collective is the size of the full array it produces or consumes on one device: the gathered
result of an all-gather, the input of a reduce-scatter, the array of an all-reduce / all-to-all / permute.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import re

KINDS = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
_OPCODES = {kind: kind for kind in KINDS} | {f"{kind}-start": kind for kind in KINDS} | {
    "ragged-all-to-all": "all-to-all"}
_DTYPE_BYTES = {"pred": 1, "s4": 0.5, "u4": 0.5, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "s32": 4, "u32": 4, "s64": 8,
                "u64": 8, "f16": 2, "bf16": 2, "f32": 4, "f64": 8, "c64": 8, "c128": 16, "f8e4m3fn": 1, "f8e5m2": 1,
                "f8e4m3": 1, "f8e4m3b11fnuz": 1, "f8e5m2fnuz": 1, "f8e4m3fnuz": 1, "f8e3m4": 1}
_ARRAY = re.compile(r"\b([a-z][a-z0-9]*)\[([0-9,]*)\]")
_HEADER = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s*\(.*\)\s*->\s*.*\{\s*$")
_NAME = re.compile(r"^\s*(ROOT\s+)?%?([\w.\-]+)\s*=\s*")
_CALLED = re.compile(r"\b(condition|body|calls|to_apply|true_computation|false_computation)=%?([\w.\-]+)")
_CALLED_LISTS = re.compile(r"\b(?:branch_computations|called_computations)=\{([^}]*)\}")
_INDEX = re.compile(r"\bindex=(\d+)")
_DIRECTION = re.compile(r"\bdirection=(\w+)")
_KNOWN_TRIP = re.compile(r'"known_trip_count"\s*:\s*\{\s*"n"\s*:\s*"(\d+)"')


@dataclasses.dataclass
class Instruction:
  name: str
  shape: str
  opcode: str
  operands: list[str]
  attributes: str
  literal: str  # the text inside the parentheses (a constant's value)


@dataclasses.dataclass
class Computation:
  name: str
  instructions: dict[str, Instruction]
  root: str


def _balanced(text: str, start: int) -> int:
  """Index just past the parenthesised group opening at text[start] == '('."""
  depth = 0
  for i in range(start, len(text)):
    if text[i] == "(":
      depth += 1
    elif text[i] == ")":
      depth -= 1
      if depth == 0:
        return i + 1
  raise ValueError(f"unbalanced parentheses in HLO line: {text[:200]}")


def _parse_instruction(line: str) -> tuple[Instruction, bool] | None:
  match = _NAME.match(line)
  if match is None:
    return None
  rest = line[match.end():]
  if rest.startswith("("):
    end = _balanced(rest, 0)
    shape, rest = rest[:end], rest[end:].lstrip()
  else:
    shape, _, rest = rest.partition(" ")
  paren = rest.find("(")
  if paren < 0:
    return None
  opcode = rest[:paren].strip()
  end = _balanced(rest, paren)
  inside = rest[paren + 1:end - 1]
  operands = re.findall(r"%([\w.\-]+)", inside)
  return Instruction(match.group(2), shape, opcode, operands, rest[end:], inside), bool(match.group(1))


def parse_module(text: str) -> tuple[dict[str, Computation], str]:
  """HLO module text -> computations by name (in text order) and the entry computation's name."""
  computations: dict[str, Computation] = {}
  entry = None
  current: Computation | None = None
  for line in text.splitlines():
    stripped = line.strip()
    header = _HEADER.match(stripped)
    if current is None:
      if header:
        current = Computation(header.group(2), {}, "")
        if header.group(1):
          entry = current.name
      continue
    if stripped == "}":
      computations[current.name] = current
      current = None
      continue
    parsed = _parse_instruction(stripped)
    if parsed is None:
      continue
    instruction, is_root = parsed
    current.instructions[instruction.name] = instruction
    if is_root:
      current.root = instruction.name
  if entry is None:
    raise ValueError("no ENTRY computation in the HLO text")
  return computations, entry


def shape_bytes(shape: str) -> float:
  """Bytes of an HLO shape (tuples summed; layouts and memory-space annotations ignored)."""
  total = 0.0
  for dtype, dims in _ARRAY.findall(shape.split("{")[0] if not shape.startswith("(") else shape):
    if dtype not in _DTYPE_BYTES:
      continue
    total += _DTYPE_BYTES[dtype] * math.prod(int(d) for d in dims.split(",") if d)
  return total


def _tuple_elements(shape: str) -> list[str]:
  """Top-level elements of a tuple shape '(a, (b, c), d)'."""
  inner = shape.strip()[1:-1]
  parts, depth, start = [], 0, 0
  for i, char in enumerate(inner):
    if char in "([{":
      depth += 1
    elif char in ")]}":
      depth -= 1
    elif char == "," and depth == 0:
      parts.append(inner[start:i].strip())
      start = i + 1
  parts.append(inner[start:].strip())
  return [p for p in parts if p]


# --- loop trip counts --------------------------------------------------------------------------------------

def _through_copies(computation: Computation, name: str) -> Instruction | None:
  instruction = computation.instructions.get(name)
  while instruction is not None and instruction.opcode in ("copy", "bitcast", "convert", "reshape") \
      and instruction.operands:
    instruction = computation.instructions.get(instruction.operands[0])
  return instruction


def _constant(computation: Computation, name: str) -> int | None:
  instruction = _through_copies(computation, name)
  if instruction is None or instruction.opcode != "constant":
    return None
  try:
    return int(instruction.literal.strip())
  except ValueError:
    return None


def _tuple_index(computation: Computation, name: str) -> int | None:
  """k when `name` is get-tuple-element(parameter, index=k) (through copies)."""
  instruction = _through_copies(computation, name)
  if instruction is None or instruction.opcode != "get-tuple-element":
    return None
  source = computation.instructions.get(instruction.operands[0]) if instruction.operands else None
  if source is None or source.opcode != "parameter":
    return None
  index = _INDEX.search(instruction.attributes)
  return int(index.group(1)) if index else None


def _init_value(caller: Computation, loop: Instruction, index: int) -> int | None:
  tuple_op = _through_copies(caller, loop.operands[0]) if loop.operands else None
  if tuple_op is None or tuple_op.opcode != "tuple" or index >= len(tuple_op.operands):
    return None
  return _constant(caller, tuple_op.operands[index])


def trip_count(computations: dict[str, Computation], caller: Computation, loop: Instruction) -> int | None:
  """Iterations of a `while` instruction, or None when they cannot be derived from the HLO."""
  known = _KNOWN_TRIP.search(loop.attributes)
  if known:
    return int(known.group(1))
  called = dict(_CALLED.findall(loop.attributes))
  condition, body = computations.get(called.get("condition", "")), computations.get(called.get("body", ""))
  if condition is None or body is None:
    return None
  compare = _through_copies(condition, condition.root)
  if compare is None or compare.opcode != "compare" or len(compare.operands) != 2:
    return None
  direction = _DIRECTION.search(compare.attributes)
  direction = direction.group(1) if direction else ""
  left, right = (_tuple_index(condition, op) for op in compare.operands)
  if left is None and right is None:
    return None
  if left is None:  # bound < i  ==  i > bound
    direction = {"LT": "GT", "LE": "GE", "GT": "LT", "GE": "LE"}.get(direction, direction)
    index, bound_name = right, compare.operands[0]
  else:
    index, bound_name = left, compare.operands[1]
  bound = _constant(condition, bound_name)
  if bound is None:  # the bound may be another loop-invariant tuple element
    bound_index = _tuple_index(condition, bound_name)
    bound = _init_value(caller, loop, bound_index) if bound_index is not None else None
  start = _init_value(caller, loop, index)
  root = body.instructions.get(body.root)
  if bound is None or start is None or root is None or root.opcode != "tuple" or index >= len(root.operands):
    return None
  update = _through_copies(body, root.operands[index])
  if update is None or update.opcode not in ("add", "subtract") or len(update.operands) != 2:
    return None
  a, b = update.operands
  if _tuple_index(body, a) == index and _constant(body, b) is not None:
    step = _constant(body, b)
  elif update.opcode == "add" and _tuple_index(body, b) == index and _constant(body, a) is not None:
    step = _constant(body, a)
  else:
    return None
  step = -step if update.opcode == "subtract" else step
  if step == 0:
    return None
  if direction in ("LT", "NE") and step > 0:
    return max(0, -(-(bound - start) // step))
  if direction == "LE" and step > 0:
    return max(0, (bound - start) // step + 1)
  if direction in ("GT", "NE") and step < 0:
    return max(0, -(-(start - bound) // -step))
  if direction == "GE" and step < 0:
    return max(0, (start - bound) // -step + 1)
  return None


# --- counting ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class CollectiveSummary:
  """Per-device collective traffic of one program execution."""

  count: dict[str, int]  # executions per kind (loop trips included)
  bytes: dict[str, float]  # bytes per kind per device (loop trips included)
  loops: list[dict[str, object]]  # every while loop: name, trip count (None: unknown) and multiplicity

  @property
  def total_bytes(self) -> float:
    return sum(self.bytes.values())

  @property
  def unknown_loops(self) -> int:
    """Loops with collectives inside whose trip count the HLO does not reveal (they are counted once).

    Loops without collectives (e.g. the rejection sampling of mixup's Beta draws) do not matter here."""
    return sum(1 for loop in self.loops if loop["trips"] is None and loop["has_collectives"])

  def to_dict(self) -> dict[str, object]:
    return {"count": self.count, "bytes": self.bytes, "total_bytes": self.total_bytes, "loops": self.loops}

  def __str__(self) -> str:
    return json.dumps(self.to_dict())


def _collective_bytes(computation: Computation, instruction: Instruction, kind: str) -> float:
  operands = sum(shape_bytes(computation.instructions[o].shape) for o in instruction.operands
                 if o in computation.instructions)
  if kind != "all-gather":
    return operands
  if instruction.opcode.endswith("-start") and instruction.shape.startswith("("):
    elements = _tuple_elements(instruction.shape)
    return shape_bytes(elements[1]) if len(elements) >= 2 else shape_bytes(instruction.shape) - operands
  return shape_bytes(instruction.shape)


def count_collectives(hlo_text: str) -> CollectiveSummary:
  """Counts the collectives of a compiled module (`compiled.as_text()`), weighting loop bodies by trip count."""
  computations, entry = parse_module(hlo_text)
  multiplicity: dict[str, float] = collections.defaultdict(float)
  multiplicity[entry] = 1.0
  loops = []
  # Callees are printed before their callers, so the reverse text order visits every caller first.
  for name in reversed(list(computations)):
    computation = computations[name]
    times = multiplicity.get(name, 0.0)
    if times == 0.0:
      continue
    for instruction in computation.instructions.values():
      called = _CALLED.findall(instruction.attributes)
      for listed in _CALLED_LISTS.findall(instruction.attributes):
        called += [("listed", c.strip().lstrip("%")) for c in listed.split(",") if c.strip()]
      if not called:
        continue
      factor = 1.0
      if instruction.opcode == "while":
        trips = trip_count(computations, computation, instruction)
        loops.append({"name": instruction.name, "computation": name, "trips": trips, "runs": times,
                      "body": dict(called).get("body", "")})
        factor = float(trips) if trips is not None else 1.0
      for role, callee in called:
        if callee in computations and callee != name:
          multiplicity[callee] += times * (factor if role in ("body", "condition") else 1.0)
  count: dict[str, int] = dict.fromkeys(KINDS, 0)
  volume: dict[str, float] = dict.fromkeys(KINDS, 0.0)
  for name, computation in computations.items():
    times = multiplicity.get(name, 0.0)
    if times == 0.0:
      continue
    for instruction in computation.instructions.values():
      kind = _OPCODES.get(instruction.opcode)
      if kind is None:
        continue
      count[kind] += int(round(times))
      volume[kind] += times * _collective_bytes(computation, instruction, kind)
  for loop in loops:
    loop["has_collectives"] = _contains(computations, loop["body"], set(_OPCODES), set())
    loop["has_matmuls"] = _contains(computations, loop["body"], {"dot", "convolution"}, set())
    del loop["body"]
  return CollectiveSummary(count=count, bytes=volume, loops=loops)


def _contains(computations: dict[str, Computation], name: str, opcodes: set[str], seen: set[str]) -> bool:
  """Whether a computation, or anything it calls, has an instruction with one of `opcodes`."""
  if name in seen or name not in computations:
    return False
  seen.add(name)
  for instruction in computations[name].instructions.values():
    if instruction.opcode in opcodes:
      return True
    callees = [c for _, c in _CALLED.findall(instruction.attributes)]
    for listed in _CALLED_LISTS.findall(instruction.attributes):
      callees += [c.strip().lstrip("%") for c in listed.split(",") if c.strip()]
    if any(_contains(computations, callee, opcodes, seen) for callee in callees):
      return True
  return False
