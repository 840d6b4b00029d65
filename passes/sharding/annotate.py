"""Write a chosen plan back into the module.

Shardy (default): `sdy.mesh @mesh`, `sdy.sharding` on every @main argument and result,
and an `sdy.sharding_constraint` after every op result the plan lays out (free
producers -- constants, iota, broadcast scalars -- and scalars excepted: their users'
constraints fix them), ops inside loop bodies and case branches included; a loop-carried
value also at the start of the loop body, an optimization_barrier's results after it.
XLA ignores `sdy.sharding` attributes on op results, so constraint ops are what steers
its partitioner.
"""

from __future__ import annotations

from jax.extend.mlir import ir
from jax.extend.mlir.dialects import sdy, stablehlo

from alpa_mlir.dialect_utils import shardy as S

from .mesh import LogicalMesh
from .problem import NodeKind, StrategyGraph, resharded_uses
from .spec import TensorSpec

MESH_NAME = "mesh"


def to_sharding(spec: TensorSpec, mesh: LogicalMesh, mesh_name: str = MESH_NAME) -> S.Sharding:
    return S.Sharding.from_axes(mesh_name, [tuple(mesh.axis_names[a] for a in dim) for dim in spec])


def sdy_mesh(mesh: LogicalMesh) -> S.Mesh:
    return S.Mesh.from_shape(mesh.shape, mesh.axis_names)


def write_sdy(module: ir.Module, sg: StrategyGraph, choices: tuple[int, ...]) -> int:
    """Annotate `module` (whose @main `sg` describes). Returns the number of
    sharding constraints inserted."""
    mesh = sg.mesh
    S.set_mesh(module, MESH_NAME, sdy_mesh(mesh))
    func = sg.graph.func_op
    S.set_arg_shardings(func, {
        arg.index: to_sharding(sg.output_spec(arg, choices), mesh)
        for arg in sg.graph.args
        if arg.info.dtype != "token"
    })
    S.set_result_shardings(func, {
        j: to_sharding(sg.output_spec(value, choices), mesh)
        for j, value in enumerate(sg.graph.returned)
        if value.info.dtype != "token"
    })
    inserted = write_constraints(sg, choices, MESH_NAME)
    with module.context:
        module.operation.attributes["mhlo.num_partitions"] = ir.IntegerAttr.get(
            ir.IntegerType.get_signless(32), mesh.size
        )
    return inserted


def write_constraints(sg: StrategyGraph, choices: tuple[int, ...], mesh_name: str) -> int:
    """The plan's `sdy.sharding_constraint`s inside the function or fragment `sg`
    describes (on mesh `@mesh_name`); returns how many were inserted."""
    return _constrain_results(sg, choices, mesh_name) + _constrain_operands(sg, choices, mesh_name)


def _constrain_results(sg: StrategyGraph, choices: tuple[int, ...], mesh_name: str) -> int:
    """A constraint after every laid-out op result, loop-carried value (after the loop
    and at the start of its body) and case result."""
    mesh = sg.mesh
    inserted = 0

    def constrain(value: ir.Value, spec: TensorSpec, loc: ir.Location) -> None:
        nonlocal inserted
        S.insert_sharding_constraint(value, to_sharding(spec, mesh, mesh_name), loc)
        inserted += 1

    for node in sg.nodes:
        if node.kind is NodeKind.ARG or node.free:
            continue
        assert node.op is not None
        strategy = node.strategies[choices[node.index]]
        for value, spec in zip(node.values, strategy.outputs, strict=True):
            if value.info.rank and value.info.dtype != "token":
                constrain(value.value, spec, node.op.location)
    for join in sg.joins:  # the body's argument (the condition reads scalars)
        value = sg.nodes[join.node].values[0]
        if join.body_arg is not None and value.info.rank and value.info.dtype != "token":
            spec = sg.nodes[join.node].strategies[choices[join.node]].outputs[0]
            constrain(join.body_arg, spec, join.owner.location)
    for op in sg.barriers:
        for value in op.results:
            src, _ = sg.producer[value.value]
            if value.info.rank and value.info.dtype != "token" and not sg.nodes[src].free:
                constrain(value.value, sg.output_spec(value, choices), op.location)
    return inserted


def _constrain_operands(sg: StrategyGraph, choices: tuple[int, ...], mesh_name: str) -> int:
    """Where a strategy (or a loop-carried value, or a case result) needs a value in
    another layout than its producer made, a constraint just for that use: XLA then
    reshards exactly as the plan costed it (and computes the op as the strategy says,
    e.g. a split contraction)."""

    mesh = sg.mesh
    uses = resharded_uses(sg, choices)
    for use in uses:
        op = use.user
        with op.context, ir.InsertionPoint(op), op.location:
            constraint = sdy.ShardingConstraintOp(op.operands[use.operand], to_sharding(use.want, mesh, mesh_name).attr())
        op.operands[use.operand] = constraint.result
    return len(uses)


def write_gspmd(module: ir.Module, sg: StrategyGraph, choices: tuple[int, ...]) -> int:
    """The same plan in GSPMD form, for compilers that still read it: `mhlo.sharding`
    strings on @main's arguments and results and `stablehlo.custom_call @Sharding` where
    write_sdy puts constraints; no mesh symbol. Returns the constraints inserted."""
    write_sdy(module, sg, choices)
    mesh = sdy_mesh(sg.mesh)
    func = sg.graph.func_op
    with module.context:
        for key in ("arg_attrs", "res_attrs"):
            if key not in func.attributes:
                continue
            dicts = []
            for d in ir.ArrayAttr(func.attributes[key]):
                entries = {ir.DictAttr(d)[i].name: ir.DictAttr(d)[i].attr for i in range(len(ir.DictAttr(d)))}
                if S.SDY_SHARDING in entries:
                    text = S.to_gspmd(S.parse_sharding(str(entries.pop(S.SDY_SHARDING))), mesh)
                    entries[S.GSPMD_SHARDING] = ir.StringAttr.get(text)
                dicts.append(ir.DictAttr.get(entries))
            func.attributes[key] = ir.ArrayAttr.get(dicts)
        constraints: list[ir.Operation] = []

        def visit(op: ir.Operation) -> ir.WalkResult:
            if op.name == "sdy.sharding_constraint":
                constraints.append(op)
            return ir.WalkResult.ADVANCE

        func.walk(visit)
        for op in constraints:
            text = S.to_gspmd(S.constraint_sharding(op), mesh)
            with ir.InsertionPoint(op), op.location:
                call = stablehlo.CustomCallOp(
                    [op.results[0].type], [op.operands[0]], call_target_name="Sharding",
                )
            call.attributes[S.GSPMD_SHARDING] = ir.StringAttr.get(text)
            op.results[0].replace_all_uses_with(call.results[0])
            op.erase()
        S.remove_meshes(module)
    return len(constraints)
