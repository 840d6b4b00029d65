"""alpa-auto-sharding finds Alpa's published plan characters on small training steps,
and its outputs run sharded equal to the single-device run."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alpa_mlir.dialect_utils import shardy as S
from alpa_mlir.dialect_utils.context import make_context, parse_module, print_module
from alpa_mlir.dialect_utils.graph import main_function
from alpa_mlir.passes import PassManager
from alpa_mlir.runtime.collectives import CollectiveKind
from alpa_mlir.runtime.reference import Tolerance, compare_outputs, compile_reference
from alpa_mlir.runtime.spmd import CompileSettings, compile_program


def mlp_step(batch: int, hidden: int, ffn: int, donate: bool = False) -> str:
    """Two-layer MLP regression step with SGD: args w1, w2, x, y (the weights donated to
    the updated weights with `donate`)."""

    def loss(w1: jax.Array, w2: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean((jax.nn.relu(x @ w1) @ w2 - y) ** 2)

    def step(w1: jax.Array, w2: jax.Array, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        g1, g2 = jax.grad(loss, argnums=(0, 1))(w1, w2, x, y)
        return w1 - 0.1 * g1, w2 - 0.1 * g2

    shapes = [(hidden, ffn), (ffn, hidden), (batch, hidden), (batch, hidden)]
    jitted = jax.jit(step, donate_argnums=(0, 1) if donate else ())
    return jitted.lower(*[jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]).as_text()


def plan(text: str, options: str):  # type: ignore[no-untyped-def]
    ctx = make_context()
    module = parse_module(text, ctx)
    PassManager.parse(f"builtin.module(alpa-auto-sharding{{cluster=alpa-abstract {options}}})", ctx).run(module)
    return module


def arg_axes(module, n: int) -> list[tuple[tuple[str, ...], ...]]:  # type: ignore[no-untyped-def]
    func = main_function(module)
    out = []
    for i in range(n):
        sharding = S.arg_sharding(func, i)
        assert sharding is not None
        out.append(sharding.dim_axes)
    return out


def run_and_compare(module, seed: int = 0):  # type: ignore[no-untyped-def]
    devices = jax.devices()[:8]
    program = compile_program(module, devices, CompileSettings(count_collectives=True))
    rng = np.random.default_rng(seed)
    # scaled like initialized weights (1/sqrt(fan-in)) so sums stay O(1) in f32
    inputs = [
        (rng.standard_normal(a.info.shape) / np.sqrt(a.info.shape[0])).astype(np.float32)
        for a in program.signature.args
    ]
    report = compare_outputs(program.run(inputs), compile_reference(module, devices[0]).run(inputs), Tolerance())
    assert report.passed, report.summary_line()
    return program.collectives


def test_large_batch_small_weights_is_data_parallel() -> None:
    module = plan(mlp_step(batch=4096, hidden=64, ffn=64), "mesh=8")
    w1, w2, x, y = arg_axes(module, 4)
    assert w1 == ((), ()) and w2 == ((), ())  # parameters replicated
    assert x == (("x",), ()) and y == (("x",), ())  # the batch split over all devices
    stats = run_and_compare(module)
    assert stats is not None and stats.count(CollectiveKind.ALL_REDUCE) == 2  # one per gradient


def test_large_weights_small_batch_is_megatron() -> None:
    module = plan(mlp_step(batch=8, hidden=1024, ffn=4096), "mesh=8")
    w1, w2, x, _ = arg_axes(module, 4)
    assert w1 == ((), ("x",))  # column-split first kernel
    assert w2 == (("x",), ())  # row-split second kernel
    assert x == ((), ())
    stats = run_and_compare(module)
    # one all-reduce for the column/row pair (forward); the backward of a Megatron pair
    # needs one more only for the input's gradient, which this step does not compute
    assert stats is not None and stats.count(CollectiveKind.ALL_REDUCE) == 1
    assert stats.total == 1


def test_slow_and_fast_axes_combine_data_and_operator_parallelism() -> None:
    # beta=1,0.1: axis x is the slow (inter-host) link, y the fast one. Activations are
    # twice the weights: gradients (weights/4 after the y split) cross the slow link,
    # activations (/2 after the x split) the fast one.
    module = plan(mlp_step(batch=4096, hidden=256, ffn=1024), "mesh=2x4 beta=1,0.1")
    w1, w2, x, y = arg_axes(module, 4)
    assert x == (("x",), ()) and y == (("x",), ())  # data parallel on the slow axis
    assert w1 == ((), ("y",)) and w2 == (("y",), ())  # Megatron on the fast axis
    run_and_compare(module)


def test_output_and_report_are_deterministic(tmp_path: Path) -> None:
    text = mlp_step(batch=64, hidden=32, ffn=64)
    outputs, reports = [], []
    for run in range(2):
        path = tmp_path / f"{run}.json"
        outputs.append(print_module(plan(text, f"mesh=2x4 report={path}")))
        report = json.loads(path.read_text())
        for timing in ("pass_seconds",):
            report.pop(timing)
        report["solver"].pop("seconds")
        reports.append(report)
    assert outputs[0] == outputs[1]
    assert reports[0] == reports[1]
    assert reports[0]["estimated_peak_bytes_per_device"] >= reports[0]["argument_bytes_per_device"] > 0


@pytest.mark.parametrize("mesh", ["4", "8", "2x2", "2x4"])
def test_mlp_plans_match_single_device(mesh: str) -> None:
    run_and_compare(plan(mlp_step(batch=64, hidden=32, ffn=64), f"mesh={mesh}"))


def test_moe_experts_split_over_experts_with_all_to_all() -> None:
    from alpa_mlir.models.export import argument_names, example_inputs, export_train_step

    sizes = {"num_experts": 8, "batch_size": 16, "hidden_size": 64, "mlp_ratio": 32, "num_layers": 1}
    module = plan(export_train_step("moe", "tiny", debug_info=False, **sizes), "mesh=8")
    names = argument_names("moe", "tiny", **sizes)
    func = main_function(module)
    experts = [i for i, n in enumerate(names) if n.endswith((".moe.wi", ".moe.wo"))]
    assert experts, names
    for i in experts:
        sharding = S.arg_sharding(func, i)
        assert sharding is not None and sharding.dim_axes[0] == ("x",), (names[i], sharding)
    devices = jax.devices()[:8]
    program = compile_program(module, devices, CompileSettings(count_collectives=True))
    inputs = example_inputs("moe", "tiny", **sizes)
    report = compare_outputs(program.run(inputs), compile_reference(module, devices[0]).run(inputs), Tolerance())
    assert report.passed, report.summary_line()
    assert program.collectives is not None and program.collectives.count(CollectiveKind.ALL_TO_ALL) >= 2


def test_prefer_reduce_scatter_scatters_gradients(tmp_path: Path) -> None:
    text = mlp_step(batch=4096, hidden=64, ffn=64)
    predicted = {}
    for flag in ("false", "true"):
        report = tmp_path / f"{flag}.json"
        module = plan(text, f"mesh=8 prefer-reduce-scatter={flag} report={report}")
        run_and_compare(module)
        predicted[flag] = json.loads(report.read_text())["predicted_collectives"]
    # data parallel: the two weight gradients are all-reduced, or reduce-scattered
    assert predicted["false"]["all-reduce"]["count"] >= 2
    assert "reduce-scatter" not in predicted["false"]
    assert predicted["true"]["reduce-scatter"]["count"] >= 2
    assert predicted["true"].get("all-reduce", {"count": 0})["count"] < predicted["false"]["all-reduce"]["count"]


def test_force_data_parallel_overrides_megatron() -> None:
    text = mlp_step(batch=64, hidden=256, ffn=1024, donate=True)  # Megatron sizes
    assert arg_axes(plan(text, "mesh=8"), 4)[0] != ((), ())
    module = plan(text, "mesh=8 force-data-parallel=true")
    assert arg_axes(module, 4) == [((), ()), ((), ()), (("x",), ()), (("x",), ())]
    stats = run_and_compare(module)
    assert stats is not None and stats.count(CollectiveKind.ALL_REDUCE) == 2  # the gradients
    pinned = plan(text, "mesh=2x4 force-data-parallel=true batch-axis=y")
    assert arg_axes(pinned, 4)[2:] == [(("y",), ()), (("y",), ())]


def test_zero_stage_3_shards_every_parameter() -> None:
    text = mlp_step(batch=1024, hidden=64, ffn=64, donate=True)  # data-parallel sizes
    assert arg_axes(plan(text, "mesh=8"), 2) == [((), ()), ((), ())]
    module = plan(text, "mesh=8 zero-stage=3")
    for axes in arg_axes(module, 2):
        assert sorted(a for dim in axes for a in dim) == ["x"]
    stats = run_and_compare(module)
    assert stats is not None and stats.count(CollectiveKind.ALL_GATHER) >= 2  # gathered for use


def test_force_data_parallel_needs_a_divisible_batch() -> None:
    from alpa_mlir.passes import PassFailure

    with pytest.raises(PassFailure, match=r"force-data-parallel: argument 2 \(6x16\) cannot be split"):
        plan(mlp_step(batch=6, hidden=16, ffn=16, donate=True), "mesh=8 force-data-parallel=true")


def test_gspmd_format_runs_like_sdy() -> None:
    text = mlp_step(batch=512, hidden=256, ffn=1024)
    sdy_plan = plan(text, "mesh=2x4")
    gspmd_plan = plan(text, "mesh=2x4 sharding-format=gspmd")
    printed = print_module(gspmd_plan)
    assert "sdy." not in printed and "#sdy" not in printed
    assert 'mhlo.sharding = "{devices=[' in printed and "custom_call @Sharding" in printed
    sdy_stats, gspmd_stats = run_and_compare(sdy_plan), run_and_compare(gspmd_plan)
    assert sdy_stats is not None and gspmd_stats is not None
    assert gspmd_stats.counts == sdy_stats.counts  # the same plan, partitioned alike


def test_without_all_to_all_resharding_gathers(tmp_path: Path) -> None:
    from alpa_mlir.models.export import example_inputs, export_train_step

    text = export_train_step("moe", "tiny", debug_info=False)
    predicted = {}
    for flag in ("true", "false"):
        report = tmp_path / f"{flag}.json"
        module = plan(text, f"mesh=2x4 allow-all-to-all={flag} report={report}")
        predicted[flag] = json.loads(report.read_text())["predicted_collectives"]
    assert predicted["true"]["all-to-all"]["count"] > 0  # this plan moves layouts between dims
    assert "all-to-all" not in predicted["false"]
    devices = jax.devices()[:8]
    program = compile_program(module, devices)
    inputs = example_inputs("moe", "tiny")
    report_ = compare_outputs(program.run(inputs), compile_reference(module, devices[0]).run(inputs), Tolerance())
    assert report_.passed, report_.summary_line()


def test_loop_without_static_trip_count_is_planned_correctly() -> None:
    """`lax.while_loop` until a data-dependent condition: no static trip count. The pass
    warns at the loop, plans its body as if it ran once, and the plan still computes the
    unpartitioned result (the batch stays split through the loop)."""

    def f(x: jax.Array, w: jax.Array) -> jax.Array:
        def cond(carry: tuple[jax.Array, jax.Array]) -> jax.Array:
            h, i = carry
            return (jnp.max(jnp.abs(h)) > 0.5) & (i < 10)

        def body(carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            h, i = carry
            return 0.5 * jnp.tanh(h @ w), i + 1

        h, _ = jax.lax.while_loop(cond, body, (x, jnp.int32(0)))
        return h

    text = jax.jit(f).lower(jax.ShapeDtypeStruct((4096, 64), jnp.float32),
                            jax.ShapeDtypeStruct((64, 64), jnp.float32)).as_text()
    ctx = make_context()
    module = parse_module(text, ctx)
    diagnostics = PassManager.parse("builtin.module(alpa-auto-sharding{cluster=alpa-abstract mesh=8})", ctx).run(module)
    assert [d.message for d in diagnostics.diagnostics] == [
        "'stablehlo.while' has no static trip count: its body is planned as if it ran once"
    ]
    x, _ = arg_axes(module, 2)
    assert x == (("x",), ())
    run_and_compare(module)
