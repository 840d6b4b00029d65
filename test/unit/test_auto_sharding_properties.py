"""Properties of alpa-auto-sharding on random small StableHLO programs, and two exact
checks of what the plan promises.

A program is a short list of nodes (hypothesis draws it), interpreted as a JAX function
and lowered with `jax.jit(f).lower(...)`; failures print it like this:

    v0 = arg[8, 12]
    v1 = arg[12, 6]
    v2 = matmul(v0, v1)  # [8, 6]          (v0 @ v1) / sqrt(12)
    v3 = arg[6]
    v4 = bias(v2, v3, [1])  # [8, 6]       v2 + v3 broadcast along dim 1
    v5 = sum(v4, [0])  # [6]               sum over dim 0, / sqrt(8)
    return v4, v5

Ops: matmul (rank 1-3 lhs), batch-matmul, contract-leading (a.T @ b, as in a weight
gradient), add, mul, maximum, tanh, exp (of -|x|), sum over an axis, reshape (merge two
adjacent dims, split one, or refactor the shape: (4, 6) -> (8, 3)), transpose, bias (a
vector broadcast along any dim). Operands are recent or earlier values (chains and DAGs),
or new arguments. Dims are 2, 3, 4, 6, 8, 12, 16: most split on the meshes, some do not.
Contractions and sums are scaled by 1/sqrt(n) and exp takes -|x|, so values stay O(1) in
f32 and the default tolerances apply.

Properties, on a random mesh in {4, 8, 2x2, 2x4} with random alpha and beta per axis
(hypothesis, derandomized: the same examples every run, so CI is reproducible):
  - the planned module verifies, compiles for 8 CPU devices, and its outputs equal the
    single-device run of the unplanned program;
  - planning is deterministic: the same program and options give byte-identical text.
Exact checks:
  - every resharding between two layouts the planner enumerates is costed with
    collectives that can deliver each device its new shard (brute force over devices);
  - a contraction split the plan pays for is what XLA runs.
"""

from __future__ import annotations

import enum
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from alpa_mlir.dialect_utils.context import make_context, parse_module, print_module
from alpa_mlir.passes import PassManager
from alpa_mlir.passes.sharding.mesh import LogicalMesh
from alpa_mlir.passes.sharding.spec import TensorSpec, enumerate_specs, resharding_steps
from alpa_mlir.runtime.collectives import CollectiveKind
from alpa_mlir.runtime.reference import Tolerance, compare_outputs
from alpa_mlir.runtime.spmd import CompileSettings, compile_program

Shape = tuple[int, ...]

DIMS = (2, 3, 4, 6, 8, 12, 16)
MAX_RANK = 3
MAX_ELEMENTS = 4096  # = 16**3: any first argument fits
MAX_OPS = 7
MESHES = ("4", "8", "2x2", "2x4")
# alpha (s) and beta (s/byte) per axis, against 1e-12 s per FLOP (the default cluster):
# 0 makes communication free (any sharding is optimal), 1 makes it prohibitive.
ALPHAS = (0.0, 1e-9, 1.0)
BETAS = (0.0, 1e-12, 1e-10, 1e-8, 0.1, 1.0)

NUMERIC_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DETERMINISM_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Kind(enum.Enum):
    ARG = "arg"
    MATMUL = "matmul"  # a[..., k] @ b[k, n]
    BATCH_MATMUL = "batch-matmul"  # a[b, m, k] @ b[b, k, n]
    CONTRACT_LEADING = "contract-leading"  # a[m, p].T @ b[m, q]
    ADD = "add"
    MUL = "mul"
    MAXIMUM = "maximum"
    TANH = "tanh"
    EXP = "exp"  # exp(-|x|)
    SUM = "sum"  # over `param[0]`
    RESHAPE = "reshape"  # to `param`
    TRANSPOSE = "transpose"  # by `param`
    BIAS = "bias"  # x + v, v[n] broadcast along x's dim `param[0]`


BINARY = (Kind.ADD, Kind.MUL, Kind.MAXIMUM)
UNARY = (Kind.TANH, Kind.EXP)


@dataclass(frozen=True)
class Node:
    """One value of a program: an argument (no operands) or an op over earlier values."""

    kind: Kind
    shape: Shape
    operands: tuple[int, ...] = ()
    param: tuple[int, ...] = ()

    def line(self, index: int) -> str:
        if self.kind is Kind.ARG:
            return f"v{index} = arg{list(self.shape)}"
        args = ", ".join(f"v{i}" for i in self.operands)
        param = f", {list(self.param)}" if self.param else ""
        return f"v{index} = {self.kind.value}({args}{param})  # {list(self.shape)}"


@dataclass(frozen=True)
class Program:
    nodes: tuple[Node, ...]
    outputs: tuple[int, ...]

    def __repr__(self) -> str:
        lines = [n.line(i) for i, n in enumerate(self.nodes)]
        lines.append("return " + ", ".join(f"v{i}" for i in self.outputs))
        return "\n".join(["Program:", *("  " + line for line in lines)])

    @property
    def arg_shapes(self) -> list[Shape]:
        return [n.shape for n in self.nodes if n.kind is Kind.ARG]


# ------------------------------------------------------------------ interpretation


def _apply(node: Node, x: list[jax.Array]) -> jax.Array:
    kind, p = node.kind, node.param
    if kind is Kind.MATMUL:
        return (x[0] @ x[1]) * (x[1].shape[0] ** -0.5)
    if kind is Kind.BATCH_MATMUL:
        return jnp.einsum("bmk,bkn->bmn", x[0], x[1]) * (x[1].shape[1] ** -0.5)
    if kind is Kind.CONTRACT_LEADING:
        return (x[0].T @ x[1]) * (x[0].shape[0] ** -0.5)
    if kind is Kind.ADD:
        return x[0] + x[1]
    if kind is Kind.MUL:
        return x[0] * x[1]
    if kind is Kind.MAXIMUM:
        return jnp.maximum(x[0], x[1])
    if kind is Kind.TANH:
        return jnp.tanh(x[0])
    if kind is Kind.EXP:
        return jnp.exp(-jnp.abs(x[0]))
    if kind is Kind.SUM:
        return jnp.sum(x[0], axis=p[0]) * (x[0].shape[p[0]] ** -0.5)
    if kind is Kind.RESHAPE:
        return jnp.reshape(x[0], p)
    if kind is Kind.TRANSPOSE:
        return jnp.transpose(x[0], p)
    if kind is Kind.BIAS:
        return x[0] + jax.lax.broadcast_in_dim(x[1], x[0].shape, p)
    raise AssertionError(f"no interpretation for {kind}")


def as_function(program: Program) -> Callable[..., tuple[jax.Array, ...]]:
    def f(*args: jax.Array) -> tuple[jax.Array, ...]:
        remaining = iter(args)
        values: list[jax.Array] = []
        for node in program.nodes:
            if node.kind is Kind.ARG:
                values.append(next(remaining))
            else:
                values.append(_apply(node, [values[i] for i in node.operands]))
            assert values[-1].shape == node.shape, (node, values[-1].shape)
        return tuple(values[i] for i in program.outputs)

    return f


def lower(program: Program) -> str:
    structs = [jax.ShapeDtypeStruct(s, jnp.float32) for s in program.arg_shapes]
    return jax.jit(as_function(program), keep_unused=True).lower(*structs).as_text()


# ------------------------------------------------------------------ generation


def _fits(shape: Shape) -> bool:
    return 1 <= len(shape) <= MAX_RANK and math.prod(shape) <= MAX_ELEMENTS


def _splits(d: int) -> list[tuple[int, int]]:
    return [(f, d // f) for f in range(2, d) if d % f == 0]


class _Builder:
    """Grows a program node by node from hypothesis draws."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.nodes: list[Node] = []

    def add(self, node: Node) -> int:
        assert _fits(node.shape), node
        self.nodes.append(node)
        return len(self.nodes) - 1

    def arg(self, shape: Shape) -> int:
        return self.add(Node(Kind.ARG, shape))

    def pick(self, ok: Callable[[Shape], bool]) -> int | None:
        """An existing value whose shape passes `ok`, preferring recent ones (chains)."""
        candidates = [i for i, n in enumerate(self.nodes) if ok(n.shape)]
        if not candidates:
            return None
        recent = candidates[-1]
        return self.draw(st.one_of(st.just(recent), st.sampled_from(candidates)))

    def value_or_arg(self, shape: Shape) -> int:
        """An existing value of `shape` or a new argument of it."""
        existing = self.pick(lambda s: s == shape)
        if existing is not None and self.draw(st.booleans()):
            return existing
        return self.arg(shape)

    def step(self) -> bool:
        """Append one op (and the arguments it needs); False if the drawn op does not
        fit the drawn operand."""
        before = len(self.nodes)
        self._step()
        return len(self.nodes) > before

    def _step(self) -> None:
        kind = self.draw(st.sampled_from([k for k in Kind if k is not Kind.ARG]))
        a = self.pick(lambda s: True)
        assert a is not None  # the program starts with an argument
        shape = self.nodes[a].shape
        if kind is Kind.MATMUL:
            n = self.draw(st.sampled_from(DIMS))
            out = (*shape[:-1], n)
            if not _fits(out):
                return
            k = shape[-1]
            b = self.pick(lambda s: len(s) == 2 and s[0] == k)
            if b is None or self.draw(st.booleans()):
                b = self.arg((k, n))
            else:
                out = (*shape[:-1], self.nodes[b].shape[1])
            self.add(Node(kind, out, (a, b)))
        elif kind is Kind.BATCH_MATMUL:
            if len(shape) != 3:
                return
            batch, _, k = shape
            n = self.draw(st.sampled_from(DIMS))
            b = self.pick(lambda s: len(s) == 3 and s[:2] == (batch, k))
            if b is None or self.draw(st.booleans()):
                b = self.arg((batch, k, n))
            out = (*shape[:2], self.nodes[b].shape[2])
            if _fits(out):
                self.add(Node(kind, out, (a, b)))
        elif kind is Kind.CONTRACT_LEADING:
            if len(shape) != 2:
                return
            m = shape[0]
            b = self.pick(lambda s: len(s) == 2 and s[0] == m)
            if b is None:
                b = self.arg((m, self.draw(st.sampled_from(DIMS))))
            self.add(Node(kind, (shape[1], self.nodes[b].shape[1]), (a, b)))  # <= 16x16
        elif kind in BINARY:
            self.add(Node(kind, shape, (a, self.value_or_arg(shape))))
        elif kind in UNARY:
            self.add(Node(kind, shape, (a,)))
        elif kind is Kind.SUM:
            if len(shape) < 2:
                return
            axis = self.draw(st.integers(0, len(shape) - 1))
            self.add(Node(kind, shape[:axis] + shape[axis + 1 :], (a,), (axis,)))
        elif kind is Kind.RESHAPE:
            self._reshape(a, shape)
        elif kind is Kind.TRANSPOSE:
            if len(shape) < 2:
                return
            perm = tuple(self.draw(st.permutations(range(len(shape)))))
            self.add(Node(kind, tuple(shape[p] for p in perm), (a,), perm))
        elif kind is Kind.BIAS:
            if len(shape) < 2:
                return
            axis = self.draw(st.sampled_from([len(shape) - 1, *range(len(shape))]))
            self.add(Node(kind, shape, (a, self.value_or_arg(shape[axis : axis + 1])), (axis,)))

    def _reshape(self, a: int, shape: Shape) -> None:
        """Merge two adjacent dims, split one, or refactor the whole shape (dims that do
        not line up: (4, 6) -> (8, 3))."""
        how = self.draw(st.sampled_from(["merge", "split", "refactor"]))
        if how == "merge" and len(shape) >= 2:
            i = self.draw(st.integers(0, len(shape) - 2))
            out = (*shape[:i], shape[i] * shape[i + 1], *shape[i + 2 :])
        elif how == "split" and any(_splits(d) for d in shape):
            i = self.draw(st.sampled_from([i for i, d in enumerate(shape) if _splits(d)]))
            f, g = self.draw(st.sampled_from(_splits(shape[i])))
            out = (*shape[:i], f, g, *shape[i + 1 :])
        else:
            rest, dims = math.prod(shape), []
            for _ in range(self.draw(st.integers(0, MAX_RANK - 1))):
                d = self.draw(st.sampled_from([d for d in range(1, rest + 1) if rest % d == 0]))
                dims.append(d)
                rest //= d
            out = (*dims, rest)
        if _fits(out) and out != shape:
            self.add(Node(Kind.RESHAPE, out, (a,), out))


@st.composite
def programs(draw: st.DrawFn) -> Program:
    builder = _Builder(draw)
    rank = draw(st.integers(1, MAX_RANK))
    builder.arg(tuple(draw(st.lists(st.sampled_from(DIMS), min_size=rank, max_size=rank))))
    wanted = draw(st.integers(1, MAX_OPS))
    made = attempts = 0
    while made < wanted and attempts < 3 * MAX_OPS:
        made += builder.step()
        attempts += 1
    nodes = tuple(builder.nodes)
    ops = [i for i, n in enumerate(nodes) if n.kind is not Kind.ARG]
    if not ops:  # every step was refused: one op on the argument
        nodes = (*nodes, Node(Kind.TANH, nodes[0].shape, (0,)))
        ops = [len(nodes) - 1]
    extra = draw(st.lists(st.sampled_from(ops), max_size=2, unique=True))
    return Program(nodes, tuple(sorted({ops[-1], *extra})))


@st.composite
def mesh_options(draw: st.DrawFn) -> str:
    mesh = draw(st.sampled_from(MESHES))
    n = len(mesh.split("x"))
    alpha = [draw(st.sampled_from(ALPHAS)) for _ in range(n)]
    beta = [draw(st.sampled_from(BETAS)) for _ in range(n)]
    return f"mesh={mesh} alpha={','.join(map(repr, alpha))} beta={','.join(map(repr, beta))}"


# ------------------------------------------------------------------ the properties


def plan(text: str, options: str):  # type: ignore[no-untyped-def]
    ctx = make_context()
    module = parse_module(text, ctx)
    PassManager.parse(f"builtin.module(alpa-auto-sharding{{cluster=alpa-abstract {options}}})", ctx).run(module)
    return module


def example_inputs(shapes: list[Shape], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1.0, 1.0, s).astype(np.float32) for s in shapes]


def test_interpreter_covers_every_op() -> None:
    """The generator's vocabulary, each op once, lowers and runs (a smoke test of the
    harness itself, independent of hypothesis' draws)."""
    nodes = (
        Node(Kind.ARG, (8, 12)),
        Node(Kind.ARG, (12, 6)),
        Node(Kind.MATMUL, (8, 6), (0, 1)),
        Node(Kind.ARG, (6,)),
        Node(Kind.BIAS, (8, 6), (2, 3), (1,)),
        Node(Kind.TANH, (8, 6), (4,)),
        Node(Kind.EXP, (8, 6), (5,)),
        Node(Kind.MUL, (8, 6), (5, 6)),
        Node(Kind.MAXIMUM, (8, 6), (7, 4)),
        Node(Kind.ADD, (8, 6), (8, 2)),
        Node(Kind.CONTRACT_LEADING, (12, 6), (0, 9)),
        Node(Kind.RESHAPE, (4, 3, 6), (10,), (4, 3, 6)),
        Node(Kind.TRANSPOSE, (6, 4, 3), (11,), (2, 0, 1)),
        Node(Kind.SUM, (6, 3), (12,), (1,)),
    )
    program = Program(nodes, (9, 13))
    text = lower(program)
    for op in ("dot_general", "add", "multiply", "maximum", "tanh", "exponential", "reduce",
               "reshape", "transpose", "broadcast_in_dim"):
        assert f"stablehlo.{op}" in text, op
    module = plan(text, "mesh=2x4 alpha=0.0,0.0 beta=0.0,0.0")
    _check_matches_single_device(program, text, module)


def _check_matches_single_device(program: Program, text: str, module) -> None:  # type: ignore[no-untyped-def]
    assert module.operation.verify()
    devices = jax.devices()[:8]
    sharded = compile_program(module, devices)
    reference = compile_program(parse_module(text, make_context()), devices[:1])
    inputs = example_inputs(program.arg_shapes)
    report = compare_outputs(sharded.run(inputs), reference.run(inputs), Tolerance())
    assert report.passed, "\n".join([report.summary_line(), *(c.line() for c in report.mismatches)])


@NUMERIC_SETTINGS
@given(program=programs(), options=mesh_options())
def test_planned_program_matches_single_device(program: Program, options: str) -> None:
    text = lower(program)
    note(options)
    module = plan(text, options)
    note(print_module(module))
    _check_matches_single_device(program, text, module)


@DETERMINISM_SETTINGS
@given(program=programs(), options=mesh_options())
def test_plan_is_deterministic(program: Program, options: str) -> None:
    text = lower(program)
    assert print_module(plan(text, options)) == print_module(plan(text, options))


# ------------------------------------------------------------------ resharding, exhaustively

Coord = tuple[int, ...]
Element = tuple[int, ...]


def shard_elements(spec: TensorSpec, shape: Shape, mesh: LogicalMesh, device: Coord) -> set[Element]:
    """The elements the device at mesh coordinate `device` holds under `spec` (the axes
    of a dim split it major first, as sdy's `[{"x", "y"}]`)."""
    ranges = []
    for axes, size in zip(spec, shape, strict=True):
        chunk = 0
        for a in axes:
            chunk = chunk * mesh.shape[a] + device[a]
        step = size // math.prod(mesh.shape[a] for a in axes)
        ranges.append(range(chunk * step, (chunk + 1) * step))
    return set(itertools.product(*ranges))


def undeliverable(src: TensorSpec, dst: TensorSpec, shape: Shape, mesh: LogicalMesh) -> Coord | None:
    """A device whose `dst` shard is not within what its collective groups hold under
    `src`, for the collectives `resharding_steps` lists (all-gather and all-to-all over
    an axis: at most the union of the group's shards; none: its own shard); None if
    every device can build its shard."""
    axes = {a for _, group, _ in resharding_steps(src, dst, 1.0, mesh) for a in group}
    devices = list(itertools.product(*(range(n) for n in mesh.shape)))
    for device in devices:
        group = [d for d in devices if all(d[a] == device[a] for a in range(mesh.ndim) if a not in axes)]
        reachable = set().union(*(shard_elements(src, shape, mesh, d) for d in group))
        if not shard_elements(dst, shape, mesh, device) <= reachable:
            return device
    return None


@pytest.mark.parametrize("mesh_shape", [(4,), (8,), (2, 2), (2, 4)], ids=["4", "8", "2x2", "2x4"])
def test_resharding_steps_deliver_every_shard(mesh_shape: Shape) -> None:
    """Every pair of layouts of an [8, 8] tensor (all `enumerate_specs` offers): the
    collectives `resharding_steps` charges for (none for a "local slice") can bring each
    device its new shard. Checked by brute force over devices and elements."""
    names = ("x", "y")[: len(mesh_shape)]
    mesh = LogicalMesh(mesh_shape, names, (1.0,) * len(mesh_shape), (1.0,) * len(mesh_shape))
    shape = (8, 8)
    specs = list(enumerate_specs(shape, mesh))
    wrong = []
    for src, dst in itertools.product(specs, specs):
        device = undeliverable(src, dst, shape, mesh)
        if device is not None:
            steps = [(kind, [names[a] for a in group]) for kind, group, _ in resharding_steps(src, dst, 1.0, mesh)]
            wrong.append(f"{src} -> {dst}: steps {steps}, device {device} lacks data")
    assert not wrong, f"{len(wrong)} of {len(specs) ** 2} reshardings:\n" + "\n".join(wrong)


# ------------------------------------------------------------------ the plan is what XLA runs


def test_planned_contraction_split_is_what_xla_runs(tmp_path: Path) -> None:
    """x[16] @ w[16, 3] on mesh=4, alpha=1 s, beta=1e-12 s/byte: every dot strategy that
    uses the mesh axis splits the contraction (3 does not divide by 4), so the plan
    computes the dot on slices of x and w and all-reduces the [3] result; the report
    predicts that all-reduce (and the objective is its 1 s latency). XLA must run that
    plan. Today the arguments are planned replicated (slicing them for the dot is free),
    only the dot's result layout is written ([{}]), not the operand layouts its strategy
    requires, and XLA computes the dot replicated: no all-reduce."""
    def f(x: jax.Array, w: jax.Array) -> jax.Array:
        return x @ w

    text = jax.jit(f).lower(
        jax.ShapeDtypeStruct((16,), jnp.float32), jax.ShapeDtypeStruct((16, 3), jnp.float32)
    ).as_text()
    report = tmp_path / "plan.json"
    module = plan(text, f"mesh=4 alpha=1.0 beta=1e-12 report={report}")
    predicted = json.loads(report.read_text())["predicted_collectives"]
    program = compile_program(module, jax.devices()[:8], CompileSettings(count_collectives=True))
    assert program.collectives is not None
    actual = program.collectives.count(CollectiveKind.ALL_REDUCE) + program.collectives.scalar_all_reduces
    assert predicted.get("all-reduce", {}).get("count", 0) == actual, (predicted, program.collectives.summary())
