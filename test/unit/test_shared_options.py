"""passes/shared_options.py: the options the planning passes share are declared once and
validated when the pipeline text is parsed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alpa_mlir.dialect_utils.context import make_context, parse_module
from alpa_mlir.passes import get_pass_class
from alpa_mlir.passes.pass_base import PassFailure
from alpa_mlir.passes.pass_manager import PassManager
from alpa_mlir.passes.pass_pipeline import PipelineError
from alpa_mlir.passes.shared_options import DEFAULT_CLUSTER, ClusterOptions, StepArgOptions

PLANNING_PASSES = ("alpa-auto-sharding", "alpa-layer-construction", "alpa-gradient-accumulation",
                   "alpa-stage-construction", "alpa-pipeshard")
CLUSTER_PASSES = ("alpa-auto-sharding", "alpa-stage-construction", "alpa-pipeshard")


def _spec(name: str, option: str):  # type: ignore[no-untyped-def]
    cls = get_pass_class(name)
    assert cls is not None
    return {s.name: s for s in cls.options()}[option]


@pytest.mark.parametrize("option", ["cluster", "devices", "memory-limit"])
def test_cluster_options_are_one_declaration(option: str) -> None:
    specs = [_spec(name, option) for name in CLUSTER_PASSES]
    assert all(s == specs[0] for s in specs), specs
    assert _spec("alpa-auto-sharding", "cluster").default == DEFAULT_CLUSTER


def test_batch_args_is_one_declaration() -> None:
    specs = [_spec(name, "batch-args") for name in PLANNING_PASSES]
    assert all(s == specs[0] for s in specs), specs
    for name in PLANNING_PASSES:
        cls = get_pass_class(name)
        assert cls is not None and issubclass(cls, StepArgOptions)
        assert issubclass(cls, ClusterOptions) == (name in CLUSTER_PASSES)


@pytest.mark.parametrize(("pipeline", "message"), [
    ("alpa-stage-construction{memory-limit=-5}", r"memory-limit=-5.0: expected a finite number of bytes > 0"),
    ("alpa-auto-sharding{memory-limit=nan}", r"memory-limit=nan: expected a finite number of bytes > 0"),
    ("alpa-pipeshard{cluster=no-such-cluster}", r"no-such-cluster"),
    ("alpa-auto-sharding{devices=1x2x4}", r"devices=1x2x4: expected HOSTSxDEVICES or a device count"),
    ("alpa-gradient-accumulation{batch-args=1,1}", r"batch-args=1,1 names an argument twice"),
    ("alpa-layer-construction{batch-args=-1}", r"batch-args=-1: argument indices are >= 0"),
    ("alpa-stage-construction{stages=manual}",
     r"stages=manual needs layer-ranges, stage-submeshes and stage-logical-shapes"),
    ("alpa-stage-construction{layer-ranges=0-1}", r"need stages=manual \(got stages=auto\)"),
    ("alpa-stage-construction{stages=manual layer-ranges=3-1 stage-submeshes=1x2 stage-logical-shapes=1x2}",
     r"expected a layer range FIRST-LAST with 0 <= FIRST <= LAST, got '3-1'"),
    ("alpa-pipeshard{stages=manual layer-ranges=0-1 stage-submeshes=8 stage-logical-shapes=1x8}",
     r"stage-submeshes: expected AxB per stage, got 8"),
    ("alpa-pipeshard{num-stages=2}", r"num-stages needs stages=uniform \(got stages=auto\)"),
    ("alpa-pipeshard{stages=uniform}", r"stages=uniform needs num-stages=N \(N >= 1\)"),
    ("alpa-pipeshard{stages=uniform num-stages=0}", r"num-stages=0: expected at least 1"),
    ("alpa-stage-construction{schedule=forward-only}", r"schedule=forward-only runs no backward"),
])
def test_bad_values_fail_when_the_pipeline_is_parsed(pipeline: str, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        PassManager.parse(f"builtin.module({pipeline})", make_context())


MODULE = """
module @memory {
  func.func @main(%x: tensor<64x16xf32>, %w: tensor<16x16xf32>) -> tensor<64x16xf32> {
    %0 = stablehlo.dot_general %x, %w, contracting_dims = [1] x [0] : (tensor<64x16xf32>, tensor<16x16xf32>) -> tensor<64x16xf32>
    return %0 : tensor<64x16xf32>
  }
}
"""


def _plan(options: str) -> tuple[dict, list[str]]:  # type: ignore[type-arg]
    ctx = make_context()
    module = parse_module(MODULE, ctx)
    diagnostics = PassManager.parse(f"builtin.module(alpa-auto-sharding{{{options}}})", ctx).run(module)
    return json.loads(Path(options.split("report=")[1].split()[0]).read_text()), [d.message for d in diagnostics.diagnostics]


def test_auto_sharding_mesh_follows_devices(tmp_path: Path) -> None:
    report, _ = _plan(f"devices=2x4 report={tmp_path / 'r.json'}")
    assert report["mesh"]["shape"] == [2, 4]
    report, _ = _plan(f"report={tmp_path / 'r.json'}")
    assert report["mesh"]["shape"] == [8]  # p3.16xlarge: one host of 8


def test_the_cluster_memory_is_a_constraint_only_when_the_plan_exceeds_it(tmp_path: Path) -> None:
    """memory-limit defaults to the cluster's device memory: a plan that fits is the
    unconstrained optimum (no warning); one that does not is planned again within it, and
    a cluster too small for any plan is an error naming the smallest reachable peak."""
    roomy, warnings = _plan(f"cluster=alpa-abstract report={tmp_path / 'roomy.json'}")
    assert warnings == []
    peak = roomy["estimated_peak_bytes_per_device"]
    cluster = json.loads((Path(__file__).parents[2] / "passes/sharding/clusters/alpa-abstract.json").read_text())

    def small(memory: float) -> str:
        cluster.update(name="small", device={"peak_flops": 1e12, "memory_bytes": memory})
        path = tmp_path / f"small{memory:.0f}.json"
        path.write_text(json.dumps(cluster))
        return str(path)

    limit = peak - 1
    tight, warnings = _plan(f"cluster={small(limit)} report={tmp_path / 'tight.json'}")
    assert tight["estimated_peak_bytes_per_device"] <= limit
    assert tight["objective"] > roomy["objective"]  # fitting costs communication
    assert warnings == [f"the unconstrained plan needs {peak:.0f} bytes per device, more than the "
                        f"{limit:.0f} of cluster small: planning again within them"]
    with pytest.raises(PassFailure, match=r"memory-limit=100 bytes per device cannot be met; the smallest peak"):
        _plan(f"cluster={small(100)} report={tmp_path / 'none.json'}")
