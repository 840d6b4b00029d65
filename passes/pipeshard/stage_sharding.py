"""Auto-shard every fragment of an MPMD program on its stage's logical mesh.

Reads the program `fragments.write_mpmd` wrote (the microbatch function and @main over
`!mpmd.mesh_tensor` values, `sdy.mesh @stage<k>` per stage) and a `LogicalMesh` per
stage. Writes `sdy.sharding_constraint`s inside each fragment (the intra-operator ILP's
plan, exactly as alpa-auto-sharding writes them) and a `sharding=<@stage<k>, [...]>` on
every `mesh_tensor` value the plan lays out: function arguments and results, fragment
and call results, transfer results.

Order and consistency: the microbatch function first, then @main, each in program
order. A fragment's ILP takes the layouts already decided for its operands as fixed, a
pinned layout for an operand read first here (the microbatch function's parameters and
gradient accumulators: the layouts the stage cost counted their memory in), and
chooses the others (a transfer result or a function argument read first here); its
results get the layouts it chose, except where a layout is required: a value passed to
the microbatch call must have the callee argument's layout, and an updated parameter
returned in place of a donated argument that argument's layout when it is updated on
the argument's own stage (the fragment then reshards it before returning), and a
microbatch-function result that the next call passes back in (an accumulator) that
argument's layout. Call results take the callee's result layouts.

Memory: @main's fragments run once per step, when no microbatch's values are alive (the
optimizer update above all, whose temporaries the stage cost does not count); each is
planned for memory first: the fastest plan whose peak of live values (arguments
included) is within `ONCE_PER_STEP_SLACK` of the smallest the ILP can reach
(`ilp.smallest_peak`). Planned for time alone, an update gathers parameters the memory
rule counted split (one all-gather of a small matrix is cheaper than the latency-bound
all-reduces of its means and norms): MoE 256 wide with Adafactor held 6.1 MB of XLA
temporaries in its update where its parameters take 0.9 MB per device.

ZeRO (`zero`, `zero_values`): the values ZeRO splits -- @main's optimizer state (the
state arguments no microbatch call reads), the microbatch function's gradient
accumulators and its parameters -- take, in the fragment that reads them first, only
the layouts that split them over all the stage's devices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from jax.extend.mlir import ir
from jax.extend.mlir.dialects import sdy

from alpa_mlir.dialect_utils import mpmd
from alpa_mlir.dialect_utils import shardy as S
from alpa_mlir.dialect_utils.attributes import donated_args
from alpa_mlir.dialect_utils.graph import FunctionGraph, ValueNode
from alpa_mlir.dialect_utils.op_factors import FactorTable, factor_rules

from ..sharding import annotate, problem
from ..sharding.cluster import ClusterSpec
from ..sharding.ilp import (
    IlpSolution,
    InfeasibleError,
    SolverError,
    SolverOptions,
    smallest_peak,
    solve,
)
from ..sharding.mesh import LogicalMesh
from ..sharding.spec import TensorSpec
from ..sharding.strategy import RuleContext
from . import zero
from .fragments import ACCUMULATORS

# How much above the smallest reachable peak @main's fragments may go for speed
ONCE_PER_STEP_SLACK = 0.10


@dataclass(frozen=True)
class ShardingSummary:
    fragments: int
    constraints: int
    objective: float  # sum of the fragments' ILP objectives


def shard_stages(module: ir.Module, meshes: Mapping[str, LogicalMesh], cluster: ClusterSpec,
                 time_limit: float = 30.0, split: frozenset[ir.Value] = frozenset(),
                 pinned: Mapping[ir.Value, TensorSpec] | None = None) -> ShardingSummary:
    """Shard every fragment (module docstring). `meshes`: mesh name -> logical mesh;
    `split`: values ZeRO splits over their stage's devices (`zero_values`); `pinned`:
    values whose layout is given (the stage cost's, `LayerCostModel.state_layouts`),
    taken where the fragment that reads them first allows it."""
    funcs = mpmd.program_functions(module)
    main = funcs["main"]
    callees = [f for name, f in funcs.items() if name != "main"]
    state = _State(meshes, cluster, time_limit, factor_rules(module), split, pinned or {})
    callee_args: dict[str, list[S.Sharding | None]] = {}
    callee_results: dict[str, list[S.Sharding | None]] = {}
    for fn in callees:
        name = str(ir.StringAttr(fn.attributes["sym_name"]).value)
        state.run(fn, {}, {}, callee_results, _threaded(main, fn, name))
        block = fn.regions[0].blocks[0]
        callee_args[name] = [state.decided.get(a) for a in block.arguments]
        callee_results[name] = [state.decided.get(v) for v in _returned(fn)]
    required, preset = _main_pins(main, callee_args)
    state.run(main, required, preset, callee_results, lean=True)
    return ShardingSummary(state.fragments, state.constraints, state.objective)


class _State:
    def __init__(self, meshes: Mapping[str, LogicalMesh], cluster: ClusterSpec, time_limit: float,
                 factors: FactorTable, split: frozenset[ir.Value], pinned: Mapping[ir.Value, TensorSpec]) -> None:
        self.meshes = meshes
        self.split = split
        self.pinned = pinned
        self.factors = factors
        self.cluster = cluster
        self.time_limit = time_limit
        self.decided: dict[ir.Value, S.Sharding | None] = {}
        self.fragments = 0
        self.constraints = 0
        self.objective = 0.0

    def run(self, fn: ir.Operation, required: Mapping[ir.Value, S.Sharding],
            preset: Mapping[ir.Value, S.Sharding],
            callee_results: Mapping[str, list[S.Sharding | None]],
            threaded: Mapping[ir.Value, ir.Value] | None = None, lean: bool = False) -> None:
        """Shard the fragments of `fn` in program order; `lean`: plan them for memory
        first (@main's, module docstring)."""
        block = fn.regions[0].blocks[0]
        for value, sharding in preset.items():
            self._set(value, sharding)
        aliases = {**_aliases(fn), **(threaded or {})}
        for op in list(block.operations):
            operation = op.operation
            name = operation.name
            if name == mpmd.FRAGMENT:
                self._fragment(operation, required, aliases, lean)
            elif name == mpmd.TRANSFER:
                result = operation.results[0]
                if result in required:
                    self._set(result, required[result])
            elif name == mpmd.CALL:
                callee = mpmd.callee_name(operation)
                for r, sharding in zip(operation.results, callee_results[callee], strict=True):
                    if sharding is not None:
                        self._set(r, sharding)
        returned = _returned(fn)
        inputs = [a.type for a in block.arguments]
        with fn.context:
            fn.attributes["function_type"] = ir.TypeAttr.get(
                ir.FunctionType.get(inputs, [v.type for v in returned]))

    def _set(self, value: ir.Value, sharding: S.Sharding | None) -> None:
        self.decided[value] = sharding
        mesh_name, tensor, _ = mpmd.mesh_tensor_parts(value.type)
        text = None if sharding is None else sharding.body()
        value.set_type(mpmd.mesh_tensor_type(mesh_name, tensor, text))

    def _fragment(self, frag: ir.Operation, required: Mapping[ir.Value, S.Sharding],
                  aliases: Mapping[ir.Value, ir.Value], lean: bool) -> None:
        mesh_name = mpmd.fragment_mesh(frag)
        mesh = self.meshes[mesh_name]
        graph = FunctionGraph(frag)
        operands = list(frag.operands)

        def narrow(arg: ValueNode, specs: list[TensorSpec]) -> list[TensorSpec]:
            value = operands[arg.index]
            fixed = self.decided.get(value)
            want = _spec(fixed, mesh) if fixed is not None else self.pinned.get(value)
            keep = [s for s in specs if s == want]
            if keep:
                return keep
            if fixed is None and value in self.split:
                return zero.narrow(specs, mesh)
            return specs

        ctx = RuleContext.for_cluster(mesh, self.cluster, self.factors)
        sg = problem.build(graph, ctx, frozenset(), narrow)
        solution = self._solve(sg, lean)
        choices = solution.choices
        self.objective += solution.objective
        self.constraints += annotate.write_constraints(sg, choices, mesh_name)
        self.fragments += 1
        for arg, v in zip(graph.args, operands, strict=True):
            if v not in self.decided and _is_mesh_tensor_value(v):
                self._set(v, annotate.to_sharding(sg.output_spec(arg, choices), mesh, mesh_name))
        terminator = list(frag.regions[0].blocks[0].operations)[-1].operation
        for j, (inner, result) in enumerate(zip(graph.returned, frag.results, strict=True)):
            chosen = annotate.to_sharding(sg.output_spec(inner, choices), mesh, mesh_name)
            want = required.get(result)
            alias = aliases.get(result)
            if want is None and alias is not None:
                want = self.decided.get(alias)
                if want is not None and want.mesh != mesh_name:
                    want = None  # updated on another stage: transferred home, laid out there
            if want is not None and want.text() != chosen.text():
                with frag.context, ir.InsertionPoint(terminator), terminator.location:

                    c = sdy.ShardingConstraintOp(terminator.operands[j], want.attr())
                terminator.operands[j] = c.result
                self.constraints += 1
                chosen = want
            self._set(result, chosen)

    def _solve(self, sg: problem.StrategyGraph, lean: bool) -> IlpSolution:
        """The fastest plan of one fragment; with `lean`, among those whose peak is
        within ONCE_PER_STEP_SLACK of the smallest reachable (else, where the solver
        finds none in time, the fastest)."""
        options = SolverOptions(time_limit=self.time_limit)
        if lean:
            bounded = problem.to_problem(sg, [], math.inf)
            try:
                peak = smallest_peak(bounded, options)
                return solve(replace(bounded, memory_budget=peak * (1 + ONCE_PER_STEP_SLACK)), options)
            except (InfeasibleError, SolverError):
                pass  # none found in time (HiGHS under a time limit tells no status): plan for time
        return solve(problem.to_problem(sg, [], None), options)


def zero_values(module: ir.Module, state_args: frozenset[int], levels: Mapping[str, int]) -> frozenset[ir.Value]:
    """The values of an MPMD program (`fragments.write_mpmd`) that ZeRO splits, each at
    the level `levels` gives its mesh (stage): @main's state arguments (indices
    `state_args`) that no microbatch call reads (optimizer state), and the microbatch
    function's arguments that the first call passes a fresh accumulator (gradient
    accumulators) or a state argument of @main (parameters)."""

    def splits(v: ir.Value, kind: zero.StateKind) -> bool:
        return mpmd.is_mesh_tensor(v.type) and zero.splits(levels.get(mpmd.parse_mesh_tensor(v.type).mesh, 0), kind)

    funcs = mpmd.program_functions(module)
    main = funcs["main"]
    block = main.regions[0].blocks[0]
    state = [a for k, a in enumerate(block.arguments) if k in state_args]
    calls = [op.operation for op in block.operations if op.operation.name == mpmd.CALL]
    read_by_calls = {v for call in calls for v in call.operands}
    found: set[ir.Value] = set()
    found.update(a for a in state if a not in read_by_calls and splits(a, zero.StateKind.OPTIMIZER))
    if calls:
        first = min(calls, key=lambda c: mpmd.call_counter(c) or 0)
        callee = funcs[mpmd.callee_name(first)].regions[0].blocks[0]
        for operand, arg in zip(first.operands, callee.arguments, strict=True):
            owner = operand.owner
            fresh = (not isinstance(owner, ir.Block) and owner.operation.name == mpmd.FRAGMENT
                     and mpmd.fragment_kind(owner.operation) == ACCUMULATORS)
            if (fresh and splits(arg, zero.StateKind.GRADIENT)) or (operand in state and splits(arg, zero.StateKind.PARAMETER)):
                found.add(arg)
    return frozenset(found)


def _spec(sharding: S.Sharding, mesh: LogicalMesh) -> TensorSpec:
    return tuple(tuple(mesh.axis_names.index(a) for a in dim) for dim in sharding.dim_axes)


def _is_mesh_tensor_value(v: ir.Value) -> bool:
    return mpmd.is_mesh_tensor(v.type)


def _returned(fn: ir.Operation) -> list[ir.Value]:
    block = fn.regions[0].blocks[0]
    return list(list(block.operations)[-1].operation.operands)


def _aliases(fn: ir.Operation) -> dict[ir.Value, ir.Value]:
    """Returned value -> the donated argument it updates (`tf.aliasing_output`)."""
    block = fn.regions[0].blocks[0]
    returned = _returned(fn)
    found: dict[ir.Value, ir.Value] = {}
    for arg, result in donated_args(fn).items():
        if result < len(returned):
            found.setdefault(returned[result], block.arguments[arg])
    return found


def _threaded(main: ir.Operation, callee: ir.Operation, name: str) -> dict[ir.Value, ir.Value]:
    """Returned value of the microbatch function -> its argument that the next call
    passes it back as (the accumulators threaded through the calls): the result must
    keep the argument's layout."""
    calls = [op.operation for op in main.regions[0].blocks[0].operations
             if op.operation.name == mpmd.CALL and mpmd.callee_name(op.operation) == name]
    results = {r: k for call in calls for k, r in enumerate(call.results)}
    returned = _returned(callee)
    args = callee.regions[0].blocks[0].arguments
    found: dict[ir.Value, ir.Value] = {}
    for call in calls:
        for p, operand in enumerate(call.operands):
            if operand in results:
                found.setdefault(returned[results[operand]], args[p])
    return found


def _main_pins(main: ir.Operation, callee_args: Mapping[str, Sequence[S.Sharding | None]]
               ) -> tuple[dict[ir.Value, S.Sharding], dict[ir.Value, S.Sharding]]:
    """Layouts @main must use: operands of the calls get the callee argument's
    (`required` for values @main computes, `preset` for its own arguments)."""
    block = main.regions[0].blocks[0]
    args = set(block.arguments)
    required: dict[ir.Value, S.Sharding] = {}
    preset: dict[ir.Value, S.Sharding] = {}
    for op in block.operations:
        if op.operation.name != mpmd.CALL:
            continue
        wanted = callee_args[mpmd.callee_name(op.operation)]
        for v, sharding in zip(op.operation.operands, wanted, strict=True):
            if sharding is None:
                continue
            (preset if v in args else required).setdefault(v, sharding)
    return required, preset

