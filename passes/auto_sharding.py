"""alpa-auto-sharding: Alpa's intra-operator ILP over a logical device mesh."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from jax.extend.mlir import ir, passmanager

from alpa_mlir.dialect_utils.graph import FunctionGraph, functions, main_function
from alpa_mlir.dialect_utils.sharding import arg_attrs, strip_shardings

from .inline_calls import inline_calls
from .options import format_value
from .pass_base import Pass, PassContext
from .sharding import annotate, problem
from .sharding.cluster import ClusterError, load_cluster
from .sharding.ilp import InfeasibleError, SolverError, SolverOptions, SolveStatus, solve
from .sharding.ilp import Solver as SolverChoice
from .sharding.mesh import LogicalMesh, MeshShape
from .sharding.spec import resharding_steps, shard_count
from .sharding.strategy import Options, RuleContext

DEFAULT_AXIS_NAMES = ("x", "y", "z", "w")


@dataclass(frozen=True)
class AutoShardingPass(Pass):
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
    argument/result pairs sharing a layout and an optional per-device memory budget over
    liveness. Ops without a rule are replicated, with a warning.
    """

    NAME: ClassVar[str] = "alpa-auto-sharding"
    SUMMARY: ClassVar[str] = "choose operator shardings on a device mesh with Alpa's ILP"

    mesh: MeshShape = field(default=MeshShape((8,)), metadata={"help": "logical mesh shape: 8, 2x4, ..."})
    mesh_axes: tuple[str, ...] = field(default=(), metadata={"help": "axis names (default x,y,z,...)"})
    alpha: tuple[float, ...] = field(default=(), metadata={"help": "latency per mesh axis, s (default: from the cluster)"})
    beta: tuple[float, ...] = field(default=(), metadata={"help": "s/byte per mesh axis (default: from the cluster)"})
    cluster: str = field(default="alpa-abstract", metadata={"help": "preset name (p3.16xlarge, a100-8, ...) or a .json file"})
    memory_budget: int | None = field(default=None, metadata={"help": "per-device bytes the plan's live tensors may use"})
    allow_all_to_all: bool = field(default=True, metadata={"help": "let resharding use all-to-all"})
    prefer_reduce_scatter: bool = field(
        default=False,
        metadata={"help": "reduce-scatter partial sums instead of all-reducing them (ZeRO-2 gradients)"},
    )
    solver: SolverChoice = field(default=SolverChoice.AUTO, metadata={"help": "ILP solver"})
    time_limit: float | None = field(default=None, metadata={"help": "solver time limit, s (best incumbent after it)"})
    report: str = field(default="", metadata={"help": "write a JSON report of the plan to this path"})

    def run(self, module: ir.Module, ctx: PassContext) -> None:
        started = time.perf_counter()
        mesh = self._logical_mesh(ctx)
        try:
            cluster = load_cluster(self.cluster)
        except ClusterError as e:
            ctx.fail(str(e))
        funcs = functions(module)
        if "main" not in funcs:
            found = ", ".join(f"@{n}" for n in funcs) or "none"
            ctx.fail(f"alpa-auto-sharding needs a @main function (found: {found})", module.operation.location)
        inline_calls(module)
        passmanager.PassManager.parse("builtin.module(symbol-dce)", context=module.context).run(module.operation)
        strip_shardings(module)
        func = main_function(module)
        graph = FunctionGraph(func)
        rule_ctx = RuleContext(mesh, 1.0 / cluster.peak_flops, Options(allow_all_to_all=self.allow_all_to_all, prefer_reduce_scatter=self.prefer_reduce_scatter))
        aliases = {
            i: int(ir.IntegerAttr(d["tf.aliasing_output"]).value)
            for i, d in enumerate(arg_attrs(func))
            if "tf.aliasing_output" in d
        }
        sg = problem.build(graph, rule_ctx, frozenset(aliases))
        for node in sg.fallbacks:
            assert node.op is not None
            ctx.warning(f"no sharding rule for '{node.op.name}': it runs replicated", node.op.location)
        ilp = problem.to_problem(sg, problem.alias_pairs(sg, aliases), self.memory_budget)
        try:
            solution = solve(ilp, SolverOptions(self.solver, self.time_limit))
        except InfeasibleError as e:
            peak = f"; the smallest peak this model can reach on this mesh is {e.min_peak_memory:.0f} bytes" if e.min_peak_memory is not None else ""
            ctx.fail(f"memory-budget={self.memory_budget} bytes per device cannot be met{peak}", func.location)
        except SolverError as e:
            ctx.fail(f"ILP solver failed: {e}", func.location)
        if solution.status is not SolveStatus.OPTIMAL:
            ctx.warning(
                f"the ILP solver stopped at its time limit ({self.time_limit} s): the plan is the best found, not proven optimal",
                func.location,
            )
        constraints = annotate.write_sdy(module, sg, solution.choices)
        if self.report:
            data = _report(self, sg, solution, constraints, time.perf_counter() - started)
            try:
                Path(self.report).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
            except OSError as e:
                ctx.fail(f"cannot write report '{self.report}': {e.strerror}")

    def _logical_mesh(self, ctx: PassContext) -> LogicalMesh:
        shape = self.mesh.dims
        names = self.mesh_axes or DEFAULT_AXIS_NAMES[: len(shape)]
        if len(names) != len(shape):
            ctx.fail(f"mesh={self.mesh} has {len(shape)} axes but mesh-axes names {len(names)}: {','.join(names)}")
        try:
            base = load_cluster(self.cluster).logical_mesh(shape, tuple(names))
        except ValueError as e:  # ClusterError, or invalid axis names
            ctx.fail(str(e))
        alpha = self.alpha or base.alpha
        beta = self.beta or base.beta
        for what, values in (("alpha", alpha), ("beta", beta)):
            if len(values) != len(shape):
                ctx.fail(
                    f"{what} needs one value per mesh axis ({len(shape)} for mesh={self.mesh}), "
                    f"got {len(values)}: {','.join(map(str, values))}"
                )
        try:
            return LogicalMesh(shape, tuple(names), tuple(alpha), tuple(beta))
        except ValueError as e:
            ctx.fail(str(e))


def predicted_collectives(sg: problem.StrategyGraph, choices: tuple[int, ...]) -> dict[str, dict[str, float]]:
    """Count and bytes per collective kind: the strategies' own plus the resharding on
    edges, as the cost model sees them."""
    count: Counter[str] = Counter()
    nbytes: dict[str, float] = {}
    for node in sg.nodes:
        for c in node.strategies[choices[node.index]].collectives:
            count[c.kind] += 1
            nbytes[c.kind] = nbytes.get(c.kind, 0.0) + c.nbytes
    for edge in sg.edges:
        src, dst = sg.nodes[edge.src], sg.nodes[edge.dst]
        assert dst.op is not None
        for k, operand in enumerate(dst.op.operands):
            if sg.producer[operand.value][0] != src.index:
                continue
            want = dst.strategies[choices[dst.index]].inputs[k]
            if want is None:
                continue
            have = sg.output_spec(operand, choices)
            for kind, _, size in resharding_steps(have, want, operand.info.nbytes, sg.mesh):
                count[kind] += 1
                nbytes[kind] = nbytes.get(kind, 0.0) + size
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
        "options": {k: format_value(v) for k, v in p.changed_options().items()},
        "objective": solution.objective,
        "solver": {"name": solution.solver, "status": solution.status.value, "seconds": solution.solve_seconds},
        "ilp": dataclasses.asdict(solution.stats),
        "ops": len(sg.graph.ops),
        "replicated_fallback_ops": sorted({n.op.name for n in sg.fallbacks if n.op is not None}),
        "sharding_constraints": constraints,
        "predicted_collectives": predicted_collectives(sg, choices),
        "arguments": args,
        "argument_bytes_per_device": sum(a["bytes_per_device"] for a in args),
        "pass_seconds": seconds,
    }
