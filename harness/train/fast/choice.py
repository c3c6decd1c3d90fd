"""Which of the Trainer's fast paths run on a given topology: decided here, once, without TensorFlow.

The Trainer (harness.train.trainer) applies these rules when it is built, and `throughput --dry-run`
prints them for profiles whose hardware is not present (GPU, TPU), so both always agree.

- Fused step: gradient and update of a training step in one XLA program. Needs XLA and exactly
  one replica (a single CPU or GPU; not TPUStrategy, whose steps are already whole XLA programs
  under the distributed path), and no L2 penalty on the tables.
- Optimizer implementation: "dense" (the reference), "lazy_exact" (dense Adam's results to float
  tolerance, rows updated when touched; needs the fused step and no L2 penalty on the tables),
  "lazy_adam" (MLPerf's Lazy Adam: different results; only when the profile names it).
  "auto" is dense: on this project's CPU measurements lazy_exact, although exact (equal to
  dense Adam on the same step to rounding), was slower at both scales tried (ml-20m sizes, batch 98,304,
  `throughput --ablation`: 187k vs 214k and 177k vs 185k examples/s in two invocations;
  ml-latest-small sizes, batch 2,048: 119k vs 156k). Replaying a row's
  skipped steps is the same arithmetic as dense Adam, only deferred; what it saves (streaming
  untouched rows) is less than what it costs under XLA on CPU (sorting rows by skipped steps,
  gathering and scattering rows, a masked replay loop). It stays available, tested, for
  hardware where that balance differs.
- Split first layer: per side (users, items) of a training batch, either every table row
  (ALL_ROWS: the table is no larger than the batch) or the batch's distinct rows (DISTINCT),
  with a static capacity planned from row frequencies (`plan_side`).
- Batches ordered by user: on the fused path, each training batch is sorted by user id before
  the step (harness.train.input_pipeline.order_by_user), so the step's per-user gathers and gradient sums
  read memory in order. The batches are the same; only float rounding changes.
- Loss scaling: dynamic for float16 compute (mixed_float16); none for float32 and bfloat16.
- Matrix products outside XLA (`tf_matmuls`): for bfloat16 compute on a CPU, the products (and
  the forward and backward pass around them) run as TensorFlow ops, whose oneDNN kernels use the
  CPU's bf16 instructions, while the rows a step reads and the Adam update stay XLA programs, and
  eval runs uncompiled (its per-pair elementwise work again an XLA program). Why: XLA's CPU
  backend widens bf16 products to fp32 (its optimized HLO converts both operands first; issue 26,
  on an AVX512_BF16 Zen 4, 3072^3: XLA bf16 203 GFLOP/s against fp32 207, TensorFlow's own kernels
  bf16 408 against fp32 216), and XLA's oneDNN dot fusion (`--xla_cpu_use_onednn`) widened them
  too on the AVX2 AMD EPYC (its XLA source keeps bf16 only with avx512bf16, not checkable here).
  Taking the products out of XLA costs little in fp32 (on the AVX2 AMD EPYC, batch 98,304: the
  tower's forward and backward as TensorFlow ops 1.04-1.12x XLA's speed, the whole split step
  0.94-0.98x the all-XLA step and its eval 1.00-1.04x), so what bf16 kernels gain is nearly what
  the step gains. On a CPU without bf16 instructions bf16 is only emulated (slower than fp32);
  the `cpu-bf16` profile's hardware gate refuses to run there unless told to (docs/performance.md).

`FastPaths` holds the Trainer's switches: `FastPaths()` is the default choice,
`FastPaths.reference()` the plain path every fast path is compared with, and `applied` turns a
request into what runs on a topology, for the Trainer and `planned_settings` alike.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

DENSE = "dense"
LAZY_EXACT = "lazy_exact"
LAZY_ADAM = "lazy_adam"
IMPLEMENTATIONS = (DENSE, LAZY_EXACT, LAZY_ADAM)
AUTO = "auto"

# Modes of one side (users or items) of a training batch.
ALL_ROWS = "all"        # use every row of the table: the table is no larger than the batch
DISTINCT = "distinct"   # deduplicate the batch's ids first (static capacity, exact fallback)


@dataclass(frozen=True)
class SidePlan:
    """How one side of a training batch is computed: every table row, or the batch's distinct rows.

    `capacity` is the static number of distinct rows planned for (DISTINCT), `full_capacity` the
    bound that always holds (min(batch, rows)); a batch exceeding `capacity` runs the full variant.
    """

    mode: str
    num_rows: int
    capacity: int
    full_capacity: int

    @property
    def needs_fallback(self) -> bool:
        return self.mode == DISTINCT and self.capacity < self.full_capacity


def expected_distinct(batch: int, frequencies: np.ndarray) -> tuple[float, float]:
    """(mean, standard deviation) of the distinct ids in `batch` draws with these probabilities.

    Draws are treated as independent (a batch is a slice of a shuffled epoch: close to it);
    the variance uses the independent-indicator approximation, which overstates it slightly.
    """
    p = np.asarray(frequencies, np.float64)
    p = p / p.sum()
    absent = np.exp(batch * np.log1p(-np.minimum(p, 1 - 1e-12)))
    mean = float(np.sum(1.0 - absent))
    var = float(np.sum(absent * (1.0 - absent)))
    return mean, math.sqrt(var)


def plan_side(num_rows: int, batch: int, frequencies: np.ndarray | None = None) -> SidePlan:
    """Choose ALL_ROWS or DISTINCT for a side with `num_rows` table rows and `batch` ids per step.

    ALL_ROWS when the table is no larger than the batch (computing every row costs no more than
    one row per example, and needs no deduplication). Otherwise DISTINCT with a capacity of the
    expected distinct count plus 8 standard deviations, rounded up to `granularity`: with
    `frequencies` (relative frequency of each row among training examples) the estimate is the
    data's own; without, uniform frequencies, which maximise the expected count (an upper bound).
    Capacities of large batches are multiples of 256 (the lazy-Adam replay block), small ones of 8.
    """
    full = min(batch, num_rows)
    if num_rows <= batch:
        return SidePlan(ALL_ROWS, num_rows, num_rows, num_rows)
    freq = np.ones(num_rows) if frequencies is None else np.asarray(frequencies, np.float64)
    if freq.shape != (num_rows,) or not np.all(freq >= 0) or freq.sum() <= 0:
        raise ValueError(f"frequencies must be {num_rows} non-negative numbers with a positive sum")
    mean, std = expected_distinct(batch, freq)
    return SidePlan(DISTINCT, num_rows, min(capacity_for(mean, batch, std), full), full)


def capacity_for(expected: float, batch: int, std: float | None = None) -> int:
    """Distinct rows to plan for: `expected` + 8 standard deviations (default sqrt(expected)),
    rounded up to 256 for large batches (the lazy-Adam replay block) or 8 for small ones."""
    granularity = 256 if batch >= 4096 else 8
    std = math.sqrt(max(expected, 1.0)) if std is None else std
    return int(math.ceil((expected + 8 * std + 1) / granularity) * granularity)


def example_frequencies(data, num_neg: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) relative frequencies among an epoch's training examples, from PreparedData.

    A user appears once per training positive plus `num_neg` times for its negatives, so in
    proportion to its positives; an item appears once per positive plus, on average,
    num_neg * positives / items times as a (uniform) negative. Only for planning capacities.
    """
    users = np.bincount(data.train_users, minlength=data.num_users).astype(np.float64)
    items = np.bincount(data.train_items, minlength=data.num_items).astype(np.float64)
    items += num_neg * len(data.train_items) / max(1, data.num_items)
    return users, items


def lazy_table(plan: SidePlan, impl: str) -> bool:
    """Whether a table with this plan gets lazy (row-wise) updates under optimizer `impl`.

    Whole-table sides always get dense Adam: every row is read anyway.
    """
    return impl != DENSE and plan.mode != ALL_ROWS


def fused_step_applies(xla: bool, num_replicas: int, tpu: bool, regularised: bool = False) -> bool:
    """True when one XLA program can hold a whole training step (see the module docstring).

    Not with an L2 penalty on the tables (`regularised`): the fused step differentiates with
    respect to the rows a batch reads, and the penalty's gradient is on every row.
    """
    return bool(xla) and num_replicas == 1 and not tpu and not regularised


def choose_optimizer_impl(requested: str, fused: bool, regularised: bool) -> str:
    """The optimizer implementation to run; raises ValueError for impossible combinations.

    "auto" is dense (see the module docstring for the measurements behind it). Lazy variants
    need the fused step, and an L2 penalty on the tables gives every row a gradient every step,
    which leaves nothing to be lazy about.
    """
    impl = DENSE if requested == AUTO else requested
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"optimizer_impl must be one of {IMPLEMENTATIONS} or {AUTO!r}, got {requested!r}")
    if impl != DENSE and regularised:
        raise ValueError("lazy Adam cannot be used with mf_regularization (its gradient touches every row)")
    if impl != DENSE and not fused:
        raise ValueError(f"optimizer_impl {impl!r} needs one replica with XLA (the fused step)")
    return impl


def optimizer_impl_for(optimizer_name: str) -> str:
    """Trainer `optimizer_impl` for a profile's optimizer name ("adam" or "lazy_adam").

    "adam" means Adam's results: dense or the exact lazy form, whichever runs ("auto").
    "lazy_adam" is MLPerf's Lazy Adam, a different optimizer the closed division allows; it is
    only ever used when the profile asks for it by name (and the run logs opt_name lazy_adam).
    """
    return LAZY_ADAM if optimizer_name == LAZY_ADAM else AUTO


def compute_dtype_for(precision: str) -> str:
    """The model's compute dtype for a profile precision ("float32", "float16" or "bfloat16")."""
    return {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}.get(precision, "float32")


def tf_matmuls_apply(compute_dtype: str, device: str) -> bool:
    """Whether matrix products leave XLA for TensorFlow's kernels: bfloat16 compute on a CPU (module docstring)."""
    return compute_dtype == "bfloat16" and device == "cpu"


def loss_scaling_for(precision: str) -> str | None:
    """"dynamic" for mixed_float16 (float16 gradients underflow without it), else None."""
    return "dynamic" if precision == "mixed_float16" else None


@dataclass(frozen=True)
class FastPaths:
    """The Trainer's fast-path switches. Each one allows a fast path; `applied` keeps it where it can run.

    `FastPaths()` is the default choice (every fast path, "auto" optimizer);
    `FastPaths.reference()` is the plain path that every fast path is compared with.
    """

    fused_step: bool = True          # gradient and update of a step in one XLA program
    split_first_layer: bool = True   # training: first MLP layer once per distinct user / item
    fast_eval: bool = True           # eval: split first layer and the sort-free rank
    optimizer_impl: str = AUTO       # DENSE, LAZY_EXACT, LAZY_ADAM or AUTO
    user_order: bool = True          # training batches sorted by user (fused step only)
    tf_matmuls: bool = True          # bf16 on CPU: products as TensorFlow (oneDNN) ops, not inside XLA

    @classmethod
    def reference(cls) -> FastPaths:
        """The plain path: the distributed step, the model's own forward, dense Adam, the argsort eval."""
        return cls(fused_step=False, split_first_layer=False, fast_eval=False, optimizer_impl=DENSE,
                   user_order=False, tf_matmuls=False)

    @classmethod
    def for_optimizer(cls, optimizer_name: str) -> FastPaths:
        """The default choice for a profile's optimizer name ("adam" or "lazy_adam")."""
        return cls(optimizer_impl=optimizer_impl_for(optimizer_name))

    def applied(self, xla: bool, num_replicas: int, tpu: bool, regularised: bool,
                bf16_on_cpu: bool = False) -> FastPaths:
        """The switches as they take effect: the fused step (and with it user order) only where it
        applies, the optimizer resolved ("auto" is dense), products outside XLA only for bfloat16
        on a CPU with XLA on (`tf_matmuls_apply`). Raises ValueError as `choose_optimizer_impl`."""
        fused = self.fused_step and fused_step_applies(xla, num_replicas, tpu, regularised)
        return replace(self, fused_step=fused, user_order=fused and self.user_order,
                       optimizer_impl=choose_optimizer_impl(self.optimizer_impl, fused, regularised),
                       tf_matmuls=self.tf_matmuls and bool(xla) and bf16_on_cpu)

    def settings(self, xla: bool, loss_scale: str | None, compute_dtype: str) -> dict:
        """What runs, as `Trainer.describe()` reports it (call on `applied` switches).

        Every eval path computes the output layer in float32 (low-precision logits tie; see
        reference/metrics.py), so `eval_output_layer` is always "float32".
        """
        return {"path": "fused" if self.fused_step else "distributed", "xla": bool(xla),
                "optimizer_impl": self.optimizer_impl, "split_first_layer": self.split_first_layer,
                "user_ordered_batches": self.user_order, "fast_eval": self.fast_eval, "loss_scale": loss_scale,
                "compute_dtype": compute_dtype, "matmuls": _matmul_kernels(self.tf_matmuls, xla),
                "eval_output_layer": "float32"}


def _matmul_kernels(tf_matmuls: bool, xla: bool) -> str:
    if tf_matmuls:
        return "TensorFlow (oneDNN) ops between XLA programs"
    return "XLA" if xla else "TensorFlow ops"


def planned_settings(xla: bool, num_replicas: int, device: str, precision: str, optimizer_name: str,
                     regularised: bool = False) -> dict:
    """What the Trainer will run for a plan, as `Trainer.describe()` reports it (no TensorFlow)."""
    compute_dtype = compute_dtype_for(precision)
    paths = FastPaths.for_optimizer(optimizer_name).applied(xla, num_replicas, device == "tpu", regularised,
                                                            bf16_on_cpu=tf_matmuls_apply(compute_dtype, device))
    return paths.settings(xla, loss_scaling_for(precision), compute_dtype)
