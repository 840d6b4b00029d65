"""alpa-layer-construction on zoo training steps: phases, layers, Adam placement, and
semantics kept (the attributes change nothing XLA computes)."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from jax.extend.mlir import ir

from alpa_mlir.dialect_utils.attributes import Phase, donated_args
from alpa_mlir.dialect_utils.context import make_context, parse_module
from alpa_mlir.dialect_utils.graph import FunctionGraph, OpNode, main_function
from alpa_mlir.models.export import argument_names, example_inputs, export_train_step
from alpa_mlir.passes.layer_construction import LayerConstructionPass
from alpa_mlir.passes.pass_base import PassFailure
from alpa_mlir.passes.pipeshard.layer_clustering import LayerCount
from alpa_mlir.passes.pipeshard.step_analysis import analyze_step
from alpa_mlir.passes.sharding.step_args import infer_step_args
from alpa_mlir.runtime.spmd import compile_program

MODELS = ("mlp", "gpt")


@functools.cache
def exported(model: str) -> str:
    return export_train_step(model, "tiny", debug_info=False)


def planned(model: str, layers: int | None = 2) -> ir.Module:
    module = parse_module(exported(model), make_context())
    LayerConstructionPass(layers=LayerCount(layers)).apply(module)
    return module


def layer(node: OpNode) -> int:
    return node.int_attr("alpa.layer") or 0


def phase(node: OpNode) -> Phase:
    attr = node.attr("alpa.phase")
    assert attr is not None, node.op
    return Phase(ir.StringAttr(attr).value)


def num_layers(graph: FunctionGraph) -> int:
    return int(ir.IntegerAttr(graph.func_op.attributes["alpa.num_layers"]).value)


@pytest.mark.parametrize("model", MODELS)
def test_every_op_has_a_layer_and_a_phase(model: str) -> None:
    module = planned(model)
    assert module.operation.verify()
    graph = FunctionGraph(main_function(module))
    assert num_layers(graph) == 2
    phases = {phase(node) for node in graph.ops}
    assert phases == set(Phase)
    assert all(0 <= layer(node) < 2 for node in graph.ops)
    assert {layer(node) for node in graph.ops if phase(node) is Phase.FORWARD} == {0, 1}


@pytest.mark.parametrize("model", MODELS)
def test_forward_layers_are_consecutive(model: str) -> None:
    module = planned(model)  # keep the module alive while the graph is used
    graph = FunctionGraph(main_function(module))
    forward = [layer(node) for node in graph.ops if phase(node) is Phase.FORWARD]
    assert forward == sorted(forward)


def test_auto_picks_a_layer_count() -> None:
    module = planned("gpt", None)
    graph = FunctionGraph(main_function(module))
    count = num_layers(graph)
    assert count >= 2
    assert {layer(node) for node in graph.ops} == set(range(count))


def test_phases_of_the_mlp() -> None:
    """The loss is forward, weight gradients (contractions over the batch) backward, the
    Adam update and the step counter apply."""
    module = parse_module(exported("mlp"), make_context())
    LayerConstructionPass(layers=LayerCount(2)).apply(module)  # inlines the relu calls
    graph = FunctionGraph(main_function(module))
    step = analyze_step(graph, infer_step_args(graph))
    assert step.loss_result == len(graph.returned) - 1
    names = argument_names("mlp")
    assert step.batch_args == {names.index("batch.x"), names.index("batch.y")}
    loss = graph.producer(graph.returned[step.loss_result])
    assert loss is not None and step.phases[loss.index] is Phase.FORWARD
    dots = [n for n in graph.ops if n.name == "stablehlo.dot_general"]
    assert [step.phases[n.index] for n in dots] == [Phase.FORWARD] * 3 + [Phase.BACKWARD] * 5
    for arg, result in step.aliases.items():
        producer = graph.producer(graph.returned[result])
        assert producer is not None, names[arg]
        assert step.phases[producer.index] is Phase.APPLY, names[arg]


def test_gpt_blocks_get_their_own_layers() -> None:
    """GPT tiny has two transformer blocks: with layers=2 each block's dots (8 each: q, k,
    v, scores, context, out, mlp in, mlp out) form one layer; the LM head joins the last."""
    module = planned("gpt")
    graph = FunctionGraph(main_function(module))
    dots = [
        node for node in graph.ops
        if node.name == "stablehlo.dot_general" and phase(node) is Phase.FORWARD
    ]
    assert len(dots) == 17
    assert [layer(node) for node in dots] == [0] * 8 + [1] * 9


@pytest.mark.parametrize("model", MODELS)
def test_adam_updates_live_with_their_parameter(model: str) -> None:
    """The updated parameter and its updated mu and nu are computed in the layer of the
    parameter (the earliest layer of a forward op that reads it)."""
    module = planned(model)  # keep the module alive while the graph is used
    graph = FunctionGraph(main_function(module))
    names = argument_names(model)
    aliases = donated_args(graph.func_op)
    checked = 0
    for arg, name in enumerate(names):
        if not name.startswith("params."):
            continue
        readers = [
            layer(node) for node, _ in graph.users(graph.args[arg]) if phase(node) is Phase.FORWARD
        ]
        if not readers:
            continue
        path = name.removeprefix("params.")
        for state in (name, f"opt_state.mu.{path}", f"opt_state.nu.{path}"):
            producer = graph.producer(graph.returned[aliases[names.index(state)]])
            assert producer is not None, state
            assert phase(producer) is Phase.APPLY, state
            assert layer(producer) == min(readers), state
            checked += 1
    assert checked >= 9


@pytest.mark.parametrize("model", MODELS)
def test_results_are_unchanged(model: str) -> None:
    inputs = example_inputs(model, "tiny", seed=0)
    device = jax.devices()[:1]
    before = compile_program(parse_module(exported(model), make_context()), device).run(list(inputs))
    after = compile_program(planned(model), device).run(list(inputs))
    assert len(before) == len(after)
    for x, y in zip(before, after, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_layer_count_option() -> None:
    assert LayerCount.parse_option("auto") == LayerCount(None)
    assert LayerCount.parse_option("4") == LayerCount(4)
    assert str(LayerCount(3)) == "3" and str(LayerCount()) == "auto"
    for bad in ("0", "-1", "two"):
        with pytest.raises(ValueError, match="expected 'auto' or a positive integer"):
            LayerCount.parse_option(bad)
    text = LayerConstructionPass(layers=LayerCount(3)).pipeline_text()
    assert LayerConstructionPass.from_options(text[text.index("{") + 1 : -1]) == LayerConstructionPass(
        layers=LayerCount(3)
    )


def test_too_many_layers_fails() -> None:
    module = parse_module(exported("mlp"), make_context())
    with pytest.raises(PassFailure, match=r"layers=1000 needs at least 1000 forward ops"):
        LayerConstructionPass(layers=LayerCount(1000)).apply(module)


def test_casts_of_the_parameters_join_the_layer_that_reads_them() -> None:
    """A mixed-precision step casts every parameter to bf16 at its top; the casts go with
    the layer of their first forward reader (so that each layer reads its parameters, not
    layer 0's casts), and every layer gets some."""
    module = parse_module(export_train_step("gpt", "tiny", debug_info=False, precision="bf16"), make_context())
    LayerConstructionPass(layers=LayerCount(4)).apply(module)
    graph = FunctionGraph(main_function(module))
    state = set(infer_step_args(graph).state)
    casts = [node for node in graph.ops if node.name == "stablehlo.convert" and phase(node) is Phase.FORWARD
             and all(v.producer is None and v.index in state for v in node.operands)]
    assert casts
    for node in casts:
        readers = [u for r in node.results for u, _ in graph.users(r) if phase(u) is Phase.FORWARD]
        assert readers and layer(node) == layer(readers[0]), node.op
    assert {layer(node) for node in casts} == {0, 1, 2, 3}
