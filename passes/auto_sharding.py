"""alpa-auto-sharding: Alpa's intra-operator ILP over a logical device mesh."""

from __future__ import annotations

import dataclasses
import enum
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils import shardy
from alpa_mlir.dialect_utils.attributes import donated_args
from alpa_mlir.dialect_utils.graph import FunctionGraph, OpNode, ValueNode
from alpa_mlir.dialect_utils.op_factors import FactorTable, factor_rules
from alpa_mlir.dialect_utils.output_files import write_atomically
from alpa_mlir.dialect_utils.shardy import MANUAL_COMPUTATION, strip_shardings

from .inlined_main import inlined_main
from .options import format_value
from .pass_base import Pass, PassContext
from .sharding import annotate, problem
from .sharding.batch_dims import batch_dims
from .sharding.cluster import ClusterSpec
from .sharding.factor_strategies import fallback_name
from .sharding.ilp import (
    IlpProblem,
    IlpSolution,
    InfeasibleError,
    SolverError,
    SolverOptions,
    SolveStatus,
    solve,
)
from .sharding.ilp import Solver as SolverChoice
from .sharding.mesh import LogicalMesh, MeshShape
from .sharding.spec import TensorSpec, resharding_steps, shard_count, used_axes
from .sharding.step_args import StepArgs
from .sharding.strategy import Options, RuleContext, Strategy
from .shared_options import ClusterOptions, StepArgOptions

DEFAULT_AXIS_NAMES = ("x", "y", "z", "w")


class ShardingFormat(enum.Enum):
    SDY = "sdy"
    GSPMD = "gspmd"


DEFAULT_TIME_LIMIT = 300.0
"""Seconds: no solver runs unbounded by default (CP-SAT took minutes on GPT tiny, 2x4;
HiGHS solves GPT 125M, 2x4, in 12 s). At the limit the best plan found is kept, with a
warning that says how far the solver's lower bound is below its cost (GPT tiny, 2x4,
cp-sat with its 8 default workers on 2 cores, time-limit=10: 2.3x HiGHS's optimum, bound
72% below the plan's cost)."""
MAX_TIME_LIMIT = 1e7
"""Seconds (about 4 months): the largest limit the solvers take (they count milliseconds)."""


@dataclass(frozen=True)
class AutoShardingPass(ClusterOptions, StepArgOptions, Pass):
    """Choose a sharding for every tensor of @main on a logical device mesh (Alpa's ILP).

    Reads: a StableHLO module (func.call helpers are inlined first; existing sdy
    annotations are replaced).
    Writes: `sdy.mesh @mesh`, `sdy.sharding` on every @main argument and result, and an
    `sdy.sharding_constraint` after every op result the plan lays out; `mhlo.num_partitions`
    = mesh size. Optionally a JSON report.
    Algorithm: per op, strategies (output layout, required operand layouts, own compute and
    collective cost); cheap ops follow an operand's layout and are merged into it; edges
    carry resharding costs (all-gather, all-to-all) under per-axis alpha/beta; an integer
    program picks one strategy per node minimizing the total (OR-tools), with donated
    argument/result pairs sharing a layout and the device memory (memory-limit, by default
    the cluster's) over liveness: a limit the user sets is a constraint from the start; the
    cluster's is added only when the unconstrained plan would not fit. Ops without a rule
    are replicated, with a warning.
    Data-parallel controls: force-data-parallel splits the batch dim of every value (from
    the batch arguments, by default inferred: sharding.step_args) over the mesh and
    replicates the rest; batch-axis pins the batch to one mesh axis; zero-stage=3 splits
    every state argument over the mesh; prefer-reduce-scatter reduce-scatters partial sums (ZeRO-2).
    """

    NAME: ClassVar[str] = "alpa-auto-sharding"
    SUMMARY: ClassVar[str] = "choose operator shardings on a device mesh with Alpa's ILP"

    mesh: MeshShape | None = field(
        default=None, metadata={"help": "logical mesh shape: 8, 2x4, ... (default: the cluster's devices)"})
    mesh_axes: tuple[str, ...] = field(default=(), metadata={"help": "axis names (default x,y,z,...)"})
    alpha: tuple[float, ...] = field(default=(), metadata={"help": "latency per mesh axis, s (default: from the cluster)"})
    beta: tuple[float, ...] = field(default=(), metadata={"help": "s/byte per mesh axis (default: from the cluster)"})
    allow_all_to_all: bool = field(default=True, metadata={"help": "let resharding use all-to-all"})
    force_data_parallel: bool = field(
        default=False,
        metadata={"help": "batch arguments split on dim 0 over the whole mesh, all others replicated"},
    )
    zero_stage: int = field(
        default=0,
        metadata={"help": "3: every parameter / optimizer-state argument split over the whole mesh (ZeRO-3)"},
    )
    batch_axis: str = field(default="", metadata={"help": "mesh axis the batch dim of batch arguments must use"})
    prefer_reduce_scatter: bool = field(
        default=False,
        metadata={"help": "reduce-scatter partial sums instead of all-reducing them (ZeRO-2 gradients)"},
    )
    solver: SolverChoice = field(
        default=SolverChoice.AUTO, metadata={"help": "ILP solver (auto: HiGHS; cp-sat runs 8 workers)"})
    time_limit: float | None = field(
        default=DEFAULT_TIME_LIMIT,
        metadata={"help": "solver time limit, s (best incumbent after it); none: no limit"},
    )
    report: str = field(default="", metadata={"help": "write a JSON report of the plan to this path"})
    sharding_format: ShardingFormat = field(
        default=ShardingFormat.SDY,
        metadata={"help": "sdy (Shardy), or gspmd (mhlo.sharding + custom_call @Sharding)"},
    )

    def __post_init__(self) -> None:
        super().__post_init__()  # the shared option groups
        mesh = self.logical_mesh()
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"zero-stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        if self.zero_stage in (1, 2):
            raise ValueError("zero-stage=1 and 2 are prefer-reduce-scatter's territory: use prefer-reduce-scatter=true")
        if self.batch_axis and self.batch_axis not in mesh.axis_names:
            raise ValueError(f"batch-axis={self.batch_axis} is not a mesh axis ({','.join(mesh.axis_names)})")
        if self.time_limit is not None and not 0 < self.time_limit <= MAX_TIME_LIMIT:
            raise ValueError(f"time-limit={self.time_limit}: expected seconds in (0, {MAX_TIME_LIMIT:.0f}], "
                             "or none for no limit")

    def run(self, module: ir.Module, ctx: PassContext) -> None:
        started = time.perf_counter()
        cluster = self.cluster_spec()
        mesh = self.logical_mesh()
        func = inlined_main(module, ctx, self.NAME)
        self._check_manual_meshes(module, mesh, ctx)
        strip_shardings(module)
        graph = FunctionGraph(func)
        factors = factor_rules(module)
        rule_ctx = RuleContext.for_cluster(
            mesh, cluster, factors,
            Options(allow_all_to_all=self.allow_all_to_all, prefer_reduce_scatter=self.prefer_reduce_scatter))
        args = self.step_args(graph, ctx, func.location)
        aliases = donated_args(func)  # layouts tied only where the buffers really are shared
        layouts = self._arg_layouts(ctx, mesh, graph, args)
        op_strategies = self._data_parallel_ops(mesh, graph, args, factors) if self.force_data_parallel else None
        sg = problem.build(graph, rule_ctx, frozenset(aliases), layouts, op_strategies)
        for node in sg.fallbacks:
            assert node.op is not None
            if node.op.name == MANUAL_COMPUTATION:
                ctx.remark("a shard_map region (sdy.manual_computation) is kept as written: its "
                           "operands and results are replicated around it", node.op.location)
                continue
            ctx.warning(f"no sharding rule for {fallback_name(node.op)}: it runs replicated", node.op.location)
        for loop in sg.unknown_trip_counts:
            ctx.warning(
                "'stablehlo.while' has no static trip count: its body is planned as if it ran once",
                loop.location,
            )
        pairs = problem.alias_pairs(sg, aliases)
        solution = self._solve(ctx, func, problem.to_problem(sg, pairs, self.memory_limit), self.memory_limit)
        memory = self.device_memory(cluster)
        peak = problem.peak_bytes(sg, solution.choices)
        if self.memory_limit is None and peak > memory:
            ctx.warning(f"the unconstrained plan needs {peak:.0f} bytes per device, more than the "
                        f"{memory:.0f} of cluster {cluster.name}: planning again within them", func.location)
            solution = self._solve(ctx, func, problem.to_problem(sg, pairs, memory), memory)
        if solution.status is not SolveStatus.OPTIMAL:
            gap = solution.gap
            how_far = ("the solver gave no lower bound" if gap is None else
                       f"the solver's lower bound is {100 * gap:.1f}% below its cost "
                       f"({solution.bound:.4g} vs {solution.objective:.4g})")
            ctx.warning(
                f"the ILP solver stopped at its time limit ({self.time_limit} s): the plan is the best "
                f"found, not proven optimal; {how_far}",
                func.location,
            )
        writer = annotate.write_gspmd if self.sharding_format is ShardingFormat.GSPMD else annotate.write_sdy
        constraints = writer(module, sg, solution.choices)
        if self.report:
            data = _report(self, sg, solution, constraints, time.perf_counter() - started)
            data["step_args"] = args.describe()
            try:
                write_atomically(self.report, json.dumps(data, indent=2, sort_keys=True) + "\n")
            except OSError as e:
                ctx.fail(f"cannot write report '{self.report}': {e.strerror}")

    def _solve(self, ctx: PassContext, func: ir.Operation, ilp: IlpProblem, limit: float | None) -> IlpSolution:
        try:
            return solve(ilp, SolverOptions(self.solver, self.time_limit))
        except InfeasibleError as e:
            if limit is None:
                ctx.fail(f"no plan meets the constraints: {e}", func.location)
            peak = (f"; the smallest peak this model can reach on this mesh is {e.min_peak_memory:.0f} bytes"
                    if e.min_peak_memory is not None else "")
            ctx.fail(f"memory-limit={limit:g} bytes per device cannot be met{peak}", func.location)
        except SolverError as e:
            ctx.fail(f"ILP solver failed: {e}", func.location)

    def _data_parallel_ops(
        self, mesh: LogicalMesh, graph: FunctionGraph, args: StepArgs, factors: FactorTable
    ) -> problem.OpStrategies:
        """force-data-parallel: an op whose results carry the batch splits it over the
        mesh (or the batch axis); the others' results are replicated. Strategies that lay
        a result out otherwise go, when any is left."""
        dims = batch_dims(graph, args.batch, factors)
        axis = mesh.axis_names.index(self.batch_axis) if self.batch_axis else None
        whole = tuple(a for a in range(mesh.ndim) if mesh.shape[a] > 1) if axis is None else (axis,)

        def wanted(v: ValueNode) -> TensorSpec:
            d = dims.get(v.value)
            return tuple(whole if i == d else () for i in range(v.info.rank))

        def narrow(op: OpNode, strategies: list[Strategy]) -> list[Strategy]:
            target = tuple(wanted(r) for r in op.results)
            keep = [s for s in strategies if s.outputs == target]
            return keep or strategies

        return narrow

    def _arg_layouts(
        self, ctx: PassContext, mesh: LogicalMesh, graph: FunctionGraph, args: StepArgs
    ) -> problem.ArgLayouts | None:
        """The argument restrictions the options ask for (None: all layouts)."""
        if not (self.force_data_parallel or self.zero_stage or self.batch_axis):
            return None
        axis = mesh.axis_names.index(self.batch_axis) if self.batch_axis else None
        batch = frozenset(args.batch)
        whole = tuple(a for a in range(mesh.ndim) if mesh.shape[a] > 1)

        def narrow(arg: ValueNode, specs: list[TensorSpec]) -> list[TensorSpec]:
            keep, why = specs, ""
            if arg.index in batch and arg.info.rank:
                if axis is not None:
                    keep, why = [s for s in keep if s[0][:1] == (axis,)], f"batch-axis={self.batch_axis}"
                if self.force_data_parallel:
                    dim0 = whole if axis is None else (axis,)
                    keep, why = [s for s in keep if s[0] == dim0 and not any(s[1:])], "force-data-parallel"
            elif self.force_data_parallel:
                keep = [s for s in specs if not any(s)]
            elif self.zero_stage == 3 and arg.index in args.state:
                keep, why = [s for s in specs if set(used_axes(s)) == set(whole)], "zero-stage=3"
            if not keep:
                ctx.fail(
                    f"{why}: argument {arg.index} ({'x'.join(map(str, arg.info.shape))}) "
                    f"cannot be split that way on mesh={'x'.join(map(str, mesh.shape))}",
                    graph.func_op.location,
                )
            return keep

        return narrow

    def _check_manual_meshes(self, module: ir.Module, mesh: LogicalMesh, ctx: PassContext) -> None:
        """shard_map regions keep their mesh, so the plan must be made on that mesh."""
        ours = annotate.sdy_mesh(mesh)
        found = shardy.meshes(module)
        for name, op in shardy.manual_meshes(module).items():
            theirs = found.get(name)
            if theirs is None:
                ctx.fail(f"{self.NAME}: a shard_map region (sdy.manual_computation) names mesh @{name}, "
                         "which the module does not define", op.location)
            if name != annotate.MESH_NAME or (theirs.shape, theirs.axis_names) != (ours.shape, ours.axis_names):
                ctx.fail(
                    f"{self.NAME}: a shard_map region (sdy.manual_computation) runs on mesh @{name} "
                    f"{theirs.text()}, and the plan's mesh @{annotate.MESH_NAME} is {ours.text()}: plan "
                    f"on the region's mesh (mesh={'x'.join(map(str, theirs.shape))} "
                    f"mesh-axes={','.join(theirs.axis_names)})"
                    + ("" if name == annotate.MESH_NAME else f", after renaming @{name} to @{annotate.MESH_NAME}"),
                    op.location)

    def _mesh_shape(self, cluster: ClusterSpec) -> MeshShape:
        if self.mesh is not None:
            return self.mesh
        return MeshShape((cluster.devices_per_host,) if cluster.hosts == 1 else (cluster.hosts, cluster.devices_per_host))

    def logical_mesh(self) -> LogicalMesh:
        """The mesh the plan is made on: shape, axis names, alpha and beta from the options
        and the cluster. Raises ValueError when they disagree."""
        cluster = self.cluster_spec()
        mesh = self._mesh_shape(cluster)
        shape = mesh.dims
        names = self.mesh_axes or DEFAULT_AXIS_NAMES[: len(shape)]
        if len(names) != len(shape):
            raise ValueError(f"mesh={mesh} has {len(shape)} axes but mesh-axes names {len(names)}: {','.join(names)}")
        base = cluster.logical_mesh(shape, tuple(names))
        alpha = self.alpha or base.alpha
        beta = self.beta or base.beta
        for what, values in (("alpha", alpha), ("beta", beta)):
            if len(values) != len(shape):
                raise ValueError(
                    f"{what} needs one value per mesh axis ({len(shape)} for mesh={mesh}), "
                    f"got {len(values)}: {','.join(map(str, values))}"
                )
        return LogicalMesh(shape, tuple(names), tuple(alpha), tuple(beta))


def predicted_collectives(
    sg: problem.StrategyGraph, choices: tuple[int, ...], allow_all_to_all: bool = True
) -> dict[str, dict[str, float]]:
    """Count and bytes per collective kind: the strategies' own, plus the resharding of
    each (value, required layout) once (XLA reshards a value once for all the users that
    need the same layout; the ILP's edge costs charge each use)."""
    count: Counter[str] = Counter()
    nbytes: dict[str, float] = {}

    def add(kind: str, size: float) -> None:
        count[kind] += 1
        nbytes[kind] = nbytes.get(kind, 0.0) + size

    for node in sg.nodes:
        for c in node.strategies[choices[node.index]].collectives:
            add(c.kind, c.nbytes)
    seen: set[tuple[ir.Value, TensorSpec]] = set()
    for use in problem.resharded_uses(sg, choices):
        if (use.value.value, use.want) in seen:
            continue
        seen.add((use.value.value, use.want))
        for kind, _, size in resharding_steps(use.have, use.want, use.value.info.nbytes, sg.mesh, allow_all_to_all):
            add(kind, size)
    return {k: {"count": count[k], "bytes": nbytes[k]} for k in sorted(count)}


def _report(p: AutoShardingPass, sg: problem.StrategyGraph, solution: Any, constraints: int, seconds: float) -> dict[str, Any]:
    choices = solution.choices
    mesh = sg.mesh
    args = []
    for arg in sg.graph.args:
        spec = sg.output_spec(arg, choices)
        args.append({
            "index": arg.index,
            "shape": list(arg.info.shape),
            "sharding": annotate.to_sharding(spec, mesh).body(),
            "bytes_per_device": arg.info.nbytes // shard_count(spec, mesh),
        })
    return {
        "mesh": {"shape": list(mesh.shape), "axes": list(mesh.axis_names), "alpha": list(mesh.alpha), "beta": list(mesh.beta)},
        "options": {k: format_value(v) for k, v in p.changed_options().items() if k != "report"},
        "objective": solution.objective,
        "solver": {"name": solution.solver, "status": solution.status.value, "seconds": solution.solve_seconds,
                   "bound": solution.bound, "gap": solution.gap},
        "ilp": dataclasses.asdict(solution.stats),
        "ops": len(sg.graph.ops),
        "replicated_fallback_ops": sorted({fallback_name(n.op, quoted=False) for n in sg.fallbacks if n.op is not None}),
        "loops": [{"carried": len(op.results), "trip_count": trip} for op, trip in sg.loops],
        "sharding_constraints": constraints,
        "predicted_collectives": predicted_collectives(sg, choices, p.allow_all_to_all),
        "arguments": args,
        "argument_bytes_per_device": sum(a["bytes_per_device"] for a in args),
        "estimated_peak_bytes_per_device": problem.peak_bytes(sg, choices),
        "pass_seconds": seconds,
    }
