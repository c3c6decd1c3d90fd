"""The op profile names and times the ops of a compiled step from XLA:CPU's own trace.

Why: `throughput --op-profile` is how a user sees which ops dominate a training step; a parser
that silently drops ops, or a trace taken without the annotation flag, would show a misleading
breakdown.
"""
from __future__ import annotations

from harness.measure.op_profile import OTHER, Instruction, category, hlo_instructions, profile_step

HLO = """
  %MatMul.18 = f32[98304,256]{1,0} dot(%a, %b), lhs_contracting_dims={1}, metadata={op_type="MatMul" op_name="x"}
  ROOT %wrapped_scatter.2 = f32[41984,256]{1,0} fusion(%a), kind=kLoop, metadata={op_type="UnsortedSegmentSum" op_name="g"}
  %divide_subtract_fusion.9 = f32[138493,192]{1,0} fusion(%p), kind=kLoop, metadata={op_type="ResourceApplyAdam"}
  %dot.2 = f32[128]{0} dot(%c, %d), lhs_contracting_dims={0}
  %multiply_add_fusion.18 = f32[138493,192]{1,0} fusion(%q), kind=kLoop, metadata={op_type="AddV2" op_name="dense_adam/add_8"}
  %add.3 = f32[128]{0} add(%c, %d), metadata={op_type="AddV2" op_name="dense_adam_like"}
  %param_0 = f32[256,256]{1,0} parameter(0)
  %cond.4 = (f32[98304,256]{1,0}, /*index=1*/s64[]) conditional(%p, %a, %a), true_computation=%t, metadata={op_type="StatelessIf" op_name="cond"}
"""

def _step(jit: bool):
    import tensorflow as tf

    def step(table, kernel, ids):
        rows = tf.gather(table, ids)
        out = tf.nn.relu(tf.matmul(rows, kernel))
        grad = tf.math.unsorted_segment_sum(tf.matmul(out, kernel, transpose_b=True), ids, 500)
        return tf.reduce_sum(grad)

    args = (tf.random.normal([500, 64]), tf.random.normal([64, 256]), tf.random.uniform([20000], 0, 500, tf.int32))
    return tf.function(step, jit_compile=jit), args


def test_hlo_instructions_carry_their_tensorflow_op_type_and_shape():
    ops = hlo_instructions(HLO)
    assert ops["MatMul.18"] == Instruction("MatMul", "f32[98304,256]{1,0}", "x", "dot")
    assert ops["wrapped_scatter.2"] == Instruction("UnsortedSegmentSum", "f32[41984,256]{1,0}", "g", "fusion")
    assert ops["dot.2"] == Instruction("", "f32[128]{0}", "", "dot")
    assert ops["param_0"].opcode == "parameter" and ops["cond.4"].opcode == "conditional"
    categories = {name: category(op.op_type, name, op.op_name) for name, op in ops.items()}
    # Adam in plain operations counts as optimizer by its name scope, not a look-alike op name.
    assert categories == {"MatMul.18": "matmul", "wrapped_scatter.2": "segment sum / scatter",
                          "divide_subtract_fusion.9": "optimizer", "dot.2": "matmul", "param_0": OTHER,
                          "multiply_add_fusion.18": "optimizer", "add.3": OTHER, "cond.4": OTHER}


def test_a_traced_step_is_broken_down_by_op():
    report = profile_step(*_step(jit=True))
    assert report["available"], report
    assert {"matmul", "gather", "segment sum / scatter"} <= set(report["categories"]), report["categories"]
    assert abs(sum(report["categories"].values()) - report["traced_ms"]) < 1e-6 * max(1.0, report["traced_ms"])
    assert report["step_ms"] > 0 and report["traced_ms"] > 0
    matmuls = [op for op in report["top"] if op["category"] == "matmul"]
    assert matmuls and all(op["op_type"] == "MatMul" and op["shape"].startswith("f32[") for op in matmuls)


def test_a_step_that_is_not_an_xla_program_has_no_op_profile():
    report = profile_step(*_step(jit=False))
    assert report["available"] is False and "no optimized HLO" in report["reason"]


def test_a_conditional_is_not_counted_on_top_of_the_ops_inside_it():
    """The trace times a conditional and, separately, the ops of the branch it ran; only the
    latter count (else the branch's time would appear twice in the categories)."""
    import tensorflow as tf

    def step(x, kernel):
        # A predicate XLA cannot fold, and branches it cannot merge, keep the conditional.
        return tf.cond(tf.reduce_min(x) > -1e9, lambda: tf.nn.relu(x @ kernel), lambda: tf.tanh(x @ kernel))

    fn = tf.function(step, jit_compile=True)
    args = (tf.random.normal([4096, 256]), tf.random.normal([256, 256]))
    instructions = hlo_instructions(fn.experimental_get_compiler_ir(*args)(stage="optimized_hlo"))
    wrappers = {name for name, op in instructions.items() if op.opcode == "conditional"}
    assert wrappers, "the test step must compile to an XLA conditional"
    report = profile_step(fn, args, top=1000)
    names = {op["name"] for op in report["top"]}
    assert not names & wrappers, report["top"]
    assert any(op["category"] == "matmul" for op in report["top"]), "the branch's product must be timed"
