"""alpa-stage-construction: Alpa's inter-operator DP, writing an MPMD pipeline program."""

from __future__ import annotations

import enum
import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, NamedTuple

from jax.extend.mlir import ir

from alpa_mlir.dialect_utils import mpmd
from alpa_mlir.dialect_utils import shardy as S
from alpa_mlir.dialect_utils.attributes import (
    NUM_LAYERS_ATTR,
    PHASE_ATTR,
    Phase,
    Residency,
    layer_of,
    phase_of,
    write_memory_plan,
)
from alpa_mlir.dialect_utils.graph import FunctionGraph
from alpa_mlir.dialect_utils.op_factors import factor_rules
from alpa_mlir.dialect_utils.output_files import write_atomically
from alpa_mlir.dialect_utils.schedules import ScheduleKind, in_flight
from alpa_mlir.dialect_utils.shardy import strip_shardings
from alpa_mlir.dialect_utils.stage_plan import (
    PlanCluster,
    PlanStage,
    StagePlanRecord,
    write_stage_plan,
)

from .inlined_main import inlined_main
from .pass_base import Pass, PassContext
from .pipeshard import zero
from .pipeshard.accumulation import SplitStep
from .pipeshard.cost_source import CostCache, StageCost
from .pipeshard.fragments import FragmentError, mesh_name, write_mpmd
from .pipeshard.manual_plan import plan_manual
from .pipeshard.memory_plan import MemoryPlanMode, StagePlanChoice
from .pipeshard.microbatch_split import apply_split, microbatch_split, remove_grad_markers
from .pipeshard.offload import offload_activations
from .pipeshard.remat import rematerialize
from .pipeshard.stage_cost import AXES, LayerCostModel
from .pipeshard.stage_dp import StageDPError, StagePlan, plan_stages
from .pipeshard.stage_sharding import shard_stages, zero_values
from .pipeshard.submesh_space import Cluster, SubmeshShape, SubmeshSpace, logical_shapes
from .sharding.batch_dims import batch_dims
from .sharding.cluster import ClusterSpec
from .sharding.mesh import MeshShape
from .sharding.spec import TensorSpec
from .sharding.step_args import StepArgs
from .shared_options import ClusterOptions, StepArgOptions


class StageMode(enum.Enum):
    AUTO = "auto"
    UNIFORM = "uniform"
    MANUAL = "manual"


class LogicalChoice(enum.Enum):
    ALL = "all"
    DATA = "data"
    MODEL = "model"


class Prepared(NamedTuple):
    """What `StageConstructionPass.prepare` leaves for the DP: @main, its layer count,
    its step arguments, the microbatch split and the layers' cost model."""

    main: ir.Operation
    num_layers: int
    args: StepArgs
    step: SplitStep
    costs: LayerCostModel


@dataclass(frozen=True)
class StageConstructionPass(ClusterOptions, StepArgOptions, Pass):
    """Slice a training step into pipeline stages on submeshes (Alpa's stage DP) and
    write it as an MPMD program (docs/mpmd-format.md).

    Reads: @main with `alpa.layer` on every op (alpa-layer-construction), a training
    step as alpa-gradient-accumulation reads it.
    Writes: the microbatched step (alpa-gradient-accumulation's split) as MPMD:
    `sdy.mesh @stage<k>` and a topology entry per stage (the stage's logical mesh,
    axes x, y), forward and backward fragments per stage in the microbatch function,
    prologue/apply fragments per stage in @main, transfers between meshes, one
    mpmd.call per microbatch; the plan (`dialect_utils.stage_plan`, with the schedule it
    was costed for, which alpa-run then runs) in `alpa.stage_plan` on the module and in
    report=FILE; each layer's memory plan (keep / recompute / selective / offload) in
    `alpa.memory_plan`.
    Algorithm: stages=auto runs Alpa's DP over (layer range, submesh, logical mesh)
    minimizing sum t_i + (M - 1) max t_i, every device used, with t from the per-layer
    auto-sharding ILP (pipeshard.stage_cost; identical layers solved once) and the
    schedule's memory rule on memory-limit (1F1B: a stage followed by s - 1 stages
    stashes min(s, M) microbatches; GPipe: all M on every stage); stages=uniform splits the layers
    evenly over num-stages equal submeshes; stages=manual takes layer-ranges,
    stage-submeshes and stage-logical-shapes. remat=true recomputes each layer's forward
    inside its backward fragment (pipeshard.remat: a stage keeps only its layers' inputs
    per microbatch in flight), and the DP costs stages that way. memory-plan=auto lets the
    DP choose per layer, with the stages, to keep its activations, recompute them,
    recompute only its cheap ops (selective) or offload them to host memory
    (pipeshard.memory_plan: the fastest combination that fits each stage's in-flight
    microbatches); recomputed layers get the rewrite above (selective ones for their
    elementwise and data-movement ops only),
    offloaded ones get transfers to the host memory kind and back (pipeshard.offload).
    zero-stage=1/2/3 splits each stage's optimizer state / also its gradient sums / also
    its parameters over the stage's devices (pipeshard.zero), in the costs and in the
    shardings written; zero-stage=auto lets the DP choose level 2 or 3 per stage (the
    faster that fits), recorded per stage.
    """

    NAME: ClassVar[str] = "alpa-stage-construction"
    SUMMARY: ClassVar[str] = "pipeline stages on submeshes (Alpa's inter-op DP), written as MPMD"

    num_microbatches: int = field(default=1, metadata={"help": "microbatches per step"})
    schedule: ScheduleKind = field(
        default=ScheduleKind.ONE_F_ONE_B,
        metadata={"help": "1f1b or gpipe: the memory rule costed, and the schedule alpa-run runs"})
    submeshes: SubmeshSpace = field(default=SubmeshSpace.POWER_OF_TWO, metadata={"help": "power-of-two or all"})
    logical_shapes: LogicalChoice = field(
        default=LogicalChoice.ALL, metadata={"help": "logical meshes per submesh: all, data (dp only), model (mp only)"})
    stages: StageMode = field(default=StageMode.AUTO, metadata={"help": "auto (DP), uniform or manual"})
    num_stages: int | None = field(default=None, metadata={"help": "stage count for stages=uniform"})
    layer_ranges: tuple[LayerRange, ...] = field(
        default=(), metadata={"help": "stages=manual: first-last layers per stage (0-1,2-3)"})
    stage_submeshes: tuple[MeshShape, ...] = field(
        default=(), metadata={"help": "stages=manual: HOSTSxDEVICES submesh per stage"})
    stage_logical_shapes: tuple[MeshShape, ...] = field(
        default=(), metadata={"help": "stages=manual: DPxMP logical mesh per stage"})
    time_limit: float = field(default=30.0, metadata={"help": "seconds per layer ILP"})
    allow_per_microbatch_statistics: bool = field(
        default=False, metadata={"help": "accept batch statistics and cumulative sums over the batch"})
    remat: bool = field(
        default=False, metadata={"help": "recompute each layer's forward in its backward (keep only layer inputs)"})
    memory_plan: MemoryPlanMode = field(
        default=MemoryPlanMode.FIXED,
        metadata={"help": "fixed (every layer kept, or recomputed with remat=true), auto (per layer keep, "
                          "recompute, selective or offload to host, chosen with the stages to fit device "
                          "memory) or manual (layer-memory)"})
    layer_memory: tuple[Residency, ...] = field(
        default=(), metadata={"help": "memory-plan=manual: keep, recompute, selective or offload per layer "
                                      "(keep,recompute,selective,offload)"})
    zero_stage: zero.ZeroStage = field(
        default=zero.ZeroStage((0,)),
        metadata={"help": "ZeRO over each stage's devices: 1 optimizer state, 2 also gradient sums, "
                          "3 also parameters (costed and emitted); auto: 2 or 3 per stage, chosen by the DP"})
    shard_stages: bool = field(
        default=True, metadata={"help": "auto-shard each fragment on its stage's logical mesh"})
    report: str = field(default="", metadata={"help": "write the plan as JSON to this file"})

    def __post_init__(self) -> None:
        if not self.schedule.has_backward:
            raise ValueError(f"schedule={self.schedule.value} runs no backward; a training step needs gpipe or 1f1b")
        for name in ("stage_submeshes", "stage_logical_shapes"):
            for shape in getattr(self, name):
                if len(shape.dims) != 2:
                    raise ValueError(f"{name.replace('_', '-')}: expected AxB per stage, got {shape}")
        manual = (self.layer_ranges, self.stage_submeshes, self.stage_logical_shapes)
        if self.stages is StageMode.MANUAL and not all(manual):
            raise ValueError("stages=manual needs layer-ranges, stage-submeshes and stage-logical-shapes")
        if self.stages is not StageMode.MANUAL and any(manual):
            raise ValueError(f"layer-ranges, stage-submeshes and stage-logical-shapes need stages=manual "
                             f"(got stages={self.stages.value})")
        if self.num_stages is not None and self.stages is not StageMode.UNIFORM:
            raise ValueError(f"num-stages needs stages=uniform (got stages={self.stages.value})")
        if self.stages is StageMode.UNIFORM and self.num_stages is None:
            raise ValueError("stages=uniform needs num-stages=N (N >= 1)")
        if self.num_stages is not None and self.num_stages < 1:
            raise ValueError(f"num-stages={self.num_stages}: expected at least 1")
        if self.remat and self.memory_plan is not MemoryPlanMode.FIXED:
            raise ValueError(f"remat=true is the fixed plan that recomputes every layer; memory-plan="
                             f"{self.memory_plan.value} decides per layer: give one of them")
        if (self.memory_plan is MemoryPlanMode.MANUAL) != bool(self.layer_memory):
            raise ValueError("memory-plan=manual and layer-memory=... go together (one residency per layer)")
        super().__post_init__()

    def run(self, module: ir.Module, ctx: PassContext) -> None:
        started = time.perf_counter()
        spec = self.cluster_spec()
        main, num_layers, args, step, costs = self.prepare(module, ctx)
        memory = self.device_memory(spec)
        plan, dp_seconds = self.plan(ctx, main, costs, num_layers)
        stage_of_layer = [k for k, s in enumerate(plan.stages) for _ in range(s.layer_start, s.layer_end + 1)]
        meshes = [S.Mesh.from_shape(tuple(s.logical_shape), AXES) for s in plan.stages]
        chosen, choices = self.memory_plans(plan, costs, memory)
        residency = [r for c in choices for r in c.residency]
        planned = time.perf_counter()
        recompute = {k for k, r in enumerate(residency) if r in (Residency.RECOMPUTE, Residency.SELECTIVE)}
        selective = {k for k, r in enumerate(residency) if r is Residency.SELECTIVE}
        recomputed = rematerialize(step.function, recompute, selective) if recompute else 0
        try:
            summary = write_mpmd(module, main, step, stage_of_layer, meshes)
        except FragmentError as e:
            ctx.fail(str(e), e.location)
        written = time.perf_counter()
        sharded = None
        if self.shard_stages:
            logical = {mesh_name(k): costs.mesh(s.logical_shape) for k, s in enumerate(plan.stages)}
            levels = {mesh_name(k): c.zero_stage for k, c in enumerate(chosen)}
            zero_split = zero_values(module, frozenset(args.state), levels)
            sharded = shard_stages(module, logical, spec, self.time_limit, zero_split,
                                   _costed_layouts(module, plan, chosen, costs, summary.callee_slots))
        offload = {k for k, r in enumerate(residency) if r is Residency.OFFLOAD}
        offloaded = offload_activations(module, offload) if offload else 0
        record = self._record(spec, plan, costs, memory, chosen, choices, summary.fragments, summary.transfers,
                              {"enabled": self.remat, "recomputed_ops": recomputed,
                               "mode": self.memory_plan.value, "offloaded_values": offloaded},
                              None if sharded is None else
                              {"fragments": sharded.fragments, "constraints": sharded.constraints})
        write_stage_plan(module, record)
        write_memory_plan(module, residency)
        data = record.to_json()
        data["timing"] = {"dp_s": dp_seconds, "layer_ilp_s": costs.stats.seconds,
                          "total_s": time.perf_counter() - started, "write_s": written - planned,
                          "shard_stages_s": time.perf_counter() - written}
        if self.report:
            try:
                write_atomically(self.report, json.dumps(data, indent=2, sort_keys=True) + "\n")
            except OSError as e:
                ctx.fail(f"cannot write report '{self.report}': {e.strerror}")

    def prepare(self, module: ir.Module, ctx: PassContext, grid: bool = False) -> Prepared:
        """The step split into microbatches and the cost model of its layers (what the
        stage DP reads); `grid`: cost Megatron-style grid plans (`LayerCostModel`'s
        `grid`) instead of the ILP's free choice. Changes `module` as `run` does up to
        the DP."""
        spec = self.cluster_spec()
        main = inlined_main(module, ctx, self.NAME)
        if NUM_LAYERS_ATTR not in main.attributes:
            ctx.fail(f"{self.NAME} needs alpa.layer on every op: run alpa-layer-construction first",
                     main.location)
        num_layers = int(ir.IntegerAttr(main.attributes[NUM_LAYERS_ATTR]).value)
        for region in S.manual_computations(module)[:1]:
            ctx.fail(f"{self.NAME}: a shard_map region (sdy.manual_computation) cannot be pipelined: "
                     "its mesh is the whole job's, not a stage's; plan the step with "
                     "alpa-auto-sharding on that mesh instead", region.location)
        strip_shardings(module)
        graph = FunctionGraph(remove_grad_markers(main))
        args = self.step_args(graph, ctx, main.location)
        state = _state_bytes(graph, frozenset(args.state))
        split = microbatch_split(graph, main, ctx, self.NAME, self.num_microbatches,
                                 args.batch, self.allow_per_microbatch_statistics)
        step = apply_split(module, main, graph, split, ctx)
        micro = FunctionGraph(step.function)
        params = {k: 1 for k, v in enumerate(step.outside[:step.num_inputs])
                  if v.is_argument and v.index in args.state}
        if self.layer_memory and len(self.layer_memory) != num_layers:
            ctx.fail(f"layer-memory gives {len(self.layer_memory)} residencies for {num_layers} layers",
                     main.location)
        costs = LayerCostModel(micro, num_layers, spec, state, params, self.time_limit, remat=self.remat,
                               zero_stage=self.zero_stage, memory_plan=self.memory_plan,
                               layer_memory=self.layer_memory,
                               grid=_batch_dims(step, args.batch) if grid else None)
        return Prepared(main, num_layers, args, step, costs)

    def _shapes(self, submesh: SubmeshShape) -> tuple[tuple[int, int], ...]:
        shapes = logical_shapes(submesh)
        if self.logical_shapes is LogicalChoice.DATA:
            return tuple(s for s in shapes if s[1] == 1)
        if self.logical_shapes is LogicalChoice.MODEL:
            return tuple(s for s in shapes if s[0] == 1)
        return shapes

    def plan(self, ctx: PassContext, main: ir.Operation, costs: LayerCostModel,
             num_layers: int) -> tuple[StagePlan, float]:
        """The stages as the options say (the DP, uniform or manual) and the seconds it
        took; fails through `ctx` when no plan fits."""
        m = self.num_microbatches
        spec = self.cluster_spec()
        cluster = Cluster(spec.hosts, spec.devices_per_host)
        memory = self.device_memory(spec)

        def cost(first: int, last: int, submesh: SubmeshShape, shape: tuple[int, int]) -> Any:
            if shape not in self._shapes(submesh):
                return None
            return costs.stage(first, last, submesh, shape)

        cache = CostCache(cost)
        started = time.perf_counter()
        try:
            if self.stages is StageMode.AUTO:
                result = plan_stages(num_layers, cluster, cache, m, submesh_space=self.submeshes,
                                     device_memory_bytes=memory, schedule=self.schedule)
                return result.plan, time.perf_counter() - started
            ranges, submeshes, shapes = self._fixed_stages(ctx, main, cluster, num_layers)
            plan = plan_manual(ranges, submeshes, shapes, cache, m, cluster=cluster, num_layers=num_layers,
                               device_memory_bytes=memory, schedule=self.schedule)
            return plan, time.perf_counter() - started
        except StageDPError as e:
            ctx.fail(f"{self.NAME}: {e}", main.location)
        except ValueError as e:
            ctx.fail(f"{self.NAME}: {e}", main.location)

    def _fixed_stages(self, ctx: PassContext, main: ir.Operation, cluster: Cluster, num_layers: int
                      ) -> tuple[list[tuple[int, int]], list[SubmeshShape], list[tuple[int, int]]]:
        if self.stages is StageMode.UNIFORM:
            s = self.num_stages
            assert s is not None  # __post_init__ refuses stages=uniform without num-stages
            if s > num_layers:
                ctx.fail(f"num-stages={s} is more than the {num_layers} layers: each stage needs "
                         "at least one layer", main.location)
            n = cluster.num_devices
            if n % s:
                ctx.fail(f"num-stages={s} does not divide the {n} devices of the cluster", main.location)
            per = n // s
            sub = SubmeshShape(per // cluster.devices_per_host, cluster.devices_per_host) \
                if per >= cluster.devices_per_host and per % cluster.devices_per_host == 0 \
                else SubmeshShape(1, per)
            bounds = [round(k * num_layers / s) for k in range(s + 1)]
            ranges = [(bounds[k], bounds[k + 1] - 1) for k in range(s)]
            shape = self._shapes(sub)[-1] if self.logical_shapes is not LogicalChoice.DATA else (per, 1)
            return ranges, [sub] * s, [shape] * s
        ranges = [(r.first, r.last) for r in self.layer_ranges]
        subs = [SubmeshShape(*s.dims) for s in self.stage_submeshes]
        shapes = [(s.dims[0], s.dims[1]) for s in self.stage_logical_shapes]
        return ranges, subs, shapes

    def memory_plans(self, plan: StagePlan, costs: LayerCostModel, memory: float
                      ) -> tuple[list[StageCost], list[StagePlanChoice]]:
        """Each stage's way (its ZeRO level) and memory plan (its layers' residency), as
        the DP costed them."""
        ways, found = [], []
        for k, s in enumerate(plan.stages):
            c = costs.stage(s.layer_start, s.layer_end, s.submesh, s.logical_shape)
            stash = in_flight(self.schedule, plan.num_stages - k, self.num_microbatches)
            fastest = c.fastest(stash, memory)
            assert fastest is not None, "the DP chose a stage no memory plan fits"
            way, choice = fastest
            ways.append(way)
            if self.layer_memory:
                choice = replace(choice, residency=self.layer_memory[s.layer_start:s.layer_end + 1])
            elif not choice.residency:  # a fixed plan: every layer alike
                fixed = Residency.RECOMPUTE if self.remat else Residency.KEEP
                choice = replace(choice, residency=(fixed,) * (s.layer_end - s.layer_start + 1))
            found.append(choice)
        return ways, found

    def _record(self, spec: ClusterSpec, plan: StagePlan, costs: LayerCostModel, memory: float,
                ways: list[StageCost], choices: list[StagePlanChoice], fragments: Mapping[str, int],
                transfers: int, remat: Mapping[str, Any], stage_sharding: Mapping[str, Any] | None
                ) -> StagePlanRecord:
        m = self.num_microbatches
        stages = []
        for k, (s, c, choice) in enumerate(zip(plan.stages, ways, choices, strict=True)):
            compute = costs.compute(s.layer_start, s.layer_end, s.logical_shape, choice.residency, c.zero_stage)
            stash = in_flight(self.schedule, plan.num_stages - k, m)
            latency = c.latency + choice.extra_s
            stages.append(PlanStage(
                stage=k, layers=(s.layer_start, s.layer_end),
                submesh=(s.submesh.hosts, s.submesh.devices),
                logical_shape=(s.logical_shape[0], s.logical_shape[1]),
                latency_s=latency, compute_s=compute, communication_s=max(latency - compute, 0.0),
                param_bytes=c.param_bytes, grad_bytes=c.grad_bytes, optimizer_bytes=c.optimizer_bytes,
                activation_bytes=choice.stashed_bytes, temp_bytes=c.temp_bytes,
                peak_bytes=c.memory_bytes(stash, choice.stashed_bytes),
                stashed_microbatches=stash, memory_plan=tuple(r.value for r in choice.residency),
                zero_stage=c.zero_stage,
            ))
        return StagePlanRecord(
            cluster=PlanCluster(spec.name, spec.hosts, spec.devices_per_host, memory),
            mode=self.stages.value, schedule=self.schedule, num_microbatches=m,
            num_layers=costs.num_layers, stages=tuple(stages),
            predicted_step_s=plan.objective, t_max_s=plan.t_max, total_latency_s=plan.total_latency,
            fragments=dict(fragments), transfers=transfers,
            cost_model={"layer_solves": costs.stats.solves, "cache_hits": costs.stats.cache_hits},
            remat=dict(remat), zero_stage="auto" if self.zero_stage.auto else self.zero_stage.levels[0],
            stage_sharding=None if stage_sharding is None else dict(stage_sharding),
        )


@dataclass(frozen=True)
class LayerRange:
    """A `layer-ranges` entry: `first-last` (inclusive) or one layer `k`."""

    first: int
    last: int

    option_type_name = "layer range (e.g. 0-3 or 4)"

    @classmethod
    def parse_option(cls, text: str) -> LayerRange:
        parts = text.split("-")
        try:
            first, last = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (-1, -1)
        except ValueError:
            first = last = -1
        if first < 0 or last < first:
            raise ValueError(f"expected a layer range FIRST-LAST with 0 <= FIRST <= LAST, got {text!r}")
        return cls(first, last)

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"



def _costed_layouts(module: ir.Module, plan: StagePlan, chosen: Sequence[StageCost], costs: LayerCostModel,
                    slots: Sequence[tuple[int, int]]) -> dict[ir.Value, TensorSpec]:
    """The layouts the stage costs held the parameters and gradient accumulators in, per
    argument of the MPMD microbatch function (`slots`: the original argument and stage
    of each): what `shard_stages` pins, so that the plan holds what its memory rule
    counted."""
    wanted = {(index, k): spec for k, (s, c) in enumerate(zip(plan.stages, chosen, strict=True))
              for index, spec in costs.state_layouts(s.layer_start, s.layer_end, s.logical_shape,
                                                     c.zero_stage).items()}
    (callee,) = [f for name, f in mpmd.program_functions(module).items() if name != "main"]
    block = callee.regions[0].blocks[0]
    return {arg: wanted[slot] for arg, slot in zip(block.arguments, slots, strict=True) if slot in wanted}


def _state_bytes(graph: FunctionGraph, state_args: frozenset[int]) -> dict[int, float]:
    """Per layer: bytes of the state arguments that no microbatch op reads (optimizer
    state), attributed to the layer of their first reader."""
    found: Counter[int] = Counter()
    for arg in graph.args:
        if arg.index not in state_args:
            continue
        users = [u for u, _ in graph.users(arg)]
        phases = {phase_of(u) for u in users if PHASE_ATTR in u.op.attributes}
        if not users or phases & {Phase.FORWARD, Phase.BACKWARD}:
            continue
        layer = layer_of(users[0])
        if layer is not None:
            found[layer] += arg.info.nbytes
    return dict(found)


def _batch_dims(step: SplitStep, batch: Sequence[int]) -> dict[ir.Value, int]:
    """The batch dim of each value of the microbatch function that has one: the dims
    linked to dim 0 of the slices of @main's batch arguments (`sharding.batch_dims`)."""
    slices = range(step.num_inputs, step.num_inputs + step.num_slices)
    wanted = frozenset(batch)
    batch_slices = [k for k in slices if step.outside[k].is_argument and step.outside[k].index in wanted]
    return batch_dims(FunctionGraph(step.function), batch_slices, factor_rules(step.function))
