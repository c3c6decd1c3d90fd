"""Where a compiled training step's time goes, op by op, from the XLA CPU runtime's own trace.

Why: `throughput` splits a step into forward + backward and optimizer, which says nothing about
*which* work dominates. Someone tuning a step (or judging how close it is to the machine's
limits) needs the ops: the large matrix products, the per-example gathers of embedding rows,
the segment sums that return their gradients, Adam's table-sized elementwise passes. While the
TensorFlow profiler records, XLA:CPU's runtime emits one event per op it executes, tagged with
the op's HLO name; this module turns that trace into milliseconds per step per op and per
category, naming and typing each op from the step's optimized HLO (an instruction's `op_type`
metadata is the TensorFlow op it came from).

Ops can run concurrently on different cores, so the traced total may slightly exceed the step's
wall time. Control-flow ops (a conditional, a while loop, a call) are left out: the trace times
the ops inside them on their own, so counting the wrapper too would count that time twice.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Callable, NamedTuple, Sequence

from harness.measure.profiler_trace import trace
from harness.core.tf_runtime import wait_for

# Category of an HLO op, from the TensorFlow op type in its metadata (first match wins).
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("matmul", ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum")),
    ("optimizer", ("ResourceApplyAdam", "ApplyAdam")),
    ("gather", ("GatherV2", "ResourceGather", "GatherNd")),
    ("segment sum / scatter", ("UnsortedSegmentSum", "SegmentSum", "ScatterNd", "TensorScatterAdd",
                               "TensorScatterUpdate", "ResourceScatterNdUpdate", "StridedSliceGrad")),
    ("reduction", ("Sum", "Mean", "Max", "Min", "Prod", "Cumsum")),
)
OTHER = "elementwise / other"
# TensorFlow name scopes whose ops are an optimizer update written in plain operations
# (harness.train.fast.lazy_adam.apply_dense_adam_from_rows): their op types are Sub, AddV2, ...
OPTIMIZER_SCOPES = ("dense_adam",)
# HLO ops whose time is the time of the ops they run, which the trace also records one by one.
CONTROL_FLOW = frozenset({"conditional", "while", "call"})
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\S+)\s")
# The opcode: the first lower-case word followed by "(" after the "=" (shapes hold none).
_OPCODE = re.compile(r"=.*?\s([a-z][a-z0-9\-]*)\(")
_OP_TYPE = re.compile(r'op_type="([^"]+)"')
_OP_NAME = re.compile(r'op_name="([^"]+)"')


@dataclass(frozen=True)
class OpTime:
    """One HLO op of the step: its name, the TensorFlow op it came from, its shape and cost."""

    name: str
    op_type: str
    category: str
    shape: str
    ms_per_step: float


class Instruction(NamedTuple):
    """What the optimized HLO says about one op: where it came from in TensorFlow, and what it is."""

    op_type: str     # the TensorFlow op type, or ""
    shape: str       # the result shape as written (a tuple's: its text up to the first space)
    op_name: str     # the TensorFlow op name (with its name scopes), or ""
    opcode: str      # the HLO opcode: fusion, dot, conditional, ...


def hlo_instructions(hlo_text: str) -> dict[str, Instruction]:
    """{instruction name: Instruction} for every instruction of an HLO module's text."""
    out: dict[str, Instruction] = {}
    for line in hlo_text.splitlines():
        match = _INSTRUCTION.match(line)
        if match:
            op_type, op_name, opcode = _OP_TYPE.search(line), _OP_NAME.search(line), _OPCODE.search(line)
            out.setdefault(match.group(1), Instruction(op_type.group(1) if op_type else "", match.group(2),
                                                       op_name.group(1) if op_name else "",
                                                       opcode.group(1) if opcode else ""))
    return out


def category(op_type: str, name: str, op_name: str = "") -> str:
    """The op's category from its TensorFlow name scope or op type, else from its HLO name."""
    if any(scope in OPTIMIZER_SCOPES for scope in op_name.split("/")[:-1]):
        return "optimizer"
    for label, types in CATEGORIES:
        if op_type in types:
            return label
    lowered = name.lower()
    for label, marker in (("matmul", "dot"), ("segment sum / scatter", "scatter"), ("gather", "gather"),
                          ("reduction", "reduce")):
        if marker in lowered:
            return label
    return OTHER


def traced_op_ms(space: Any) -> dict[str, float]:
    """Total traced milliseconds per HLO op name in one profiler XSpace."""
    totals: dict[str, float] = {}
    for plane in space.planes:
        hlo_stat = {k for k, m in plane.stat_metadata.items() if m.name == "hlo_op"}
        if not hlo_stat:
            continue
        for line in plane.lines:
            for event in line.events:
                if not any(s.metadata_id in hlo_stat for s in event.stats):
                    continue
                name = plane.event_metadata[event.metadata_id].name
                totals[name] = totals.get(name, 0.0) + event.duration_ps / 1e9
    return totals


def profile_step(step: Callable[..., Any], args: Sequence[Any], steps: int = 3, top: int = 12) -> dict:
    """Trace `steps` calls of the jit-compiled `step(*args)`; ms per step by category and by op.

    Returns {"available": False, "reason": ...} when the trace holds no XLA op events (the
    function does not run as an XLA program).
    """
    try:
        hlo = step.experimental_get_compiler_ir(*args)(stage="optimized_hlo")
    except (AttributeError, ValueError, TypeError) as error:
        return {"available": False, "reason": f"no optimized HLO for the step ({str(error)[:200]})"}
    instructions = hlo_instructions(hlo)
    wait_for(step(*args))

    def run() -> None:
        result = None
        for _ in range(steps):
            result = step(*args)
        wait_for(result)

    wall, space = trace(run)
    totals = traced_op_ms(space) if space is not None else {}
    if not totals:
        return {"available": False, "reason": "the trace holds no XLA op events (is the function jit-compiled?)"}
    ops = []
    for name, ms in totals.items():
        op = instructions.get(name, Instruction("", "", "", ""))
        if op.opcode in CONTROL_FLOW:
            continue
        ops.append(OpTime(name, op.op_type, category(op.op_type, name, op.op_name), op.shape, ms / steps))
    ops.sort(key=lambda op: op.ms_per_step, reverse=True)
    traced = sum(op.ms_per_step for op in ops)
    by_category: dict[str, float] = {}
    for op in ops:
        by_category[op.category] = by_category.get(op.category, 0.0) + op.ms_per_step
    return {"available": True, "steps": steps, "step_ms": 1000 * wall / steps, "traced_ms": traced,
            "categories": dict(sorted(by_category.items(), key=lambda kv: kv[1], reverse=True)),
            "top": [asdict(op) for op in ops[:top]]}
