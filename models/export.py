"""Export API: a zoo model's training step as StableHLO text, and inputs to feed it.

    export_train_step("gpt", "39B")            # StableHLO of the whole step, no 39B of memory
    example_inputs("gpt", "tiny", seed=0)       # numpy arrays, one per @main argument
    argument_names("gpt", "tiny")               # "params.embed.position", ..., "batch.labels"

@main's arguments are, in order, the leaves of (params, opt_state, batch); its results the
leaves of (new_params, new_opt_state, loss). Leaves follow JAX's pytree order (dict keys
sorted, lists in order; Adam's state is mu, nu, step, Adafactor's nu, step: see
`optimizer.py`). Params and opt_state are donated
(`tf.aliasing_output` on those arguments) unless `donate=False`. `precision="bf16"` or
`"fp16"` exports the mixed-precision step (`precision.py`); the arguments and results
keep their dtypes (float32 parameters, optimizer state and float inputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from alpa_mlir.models.errors import ModelConfigError
from alpa_mlir.models.optimizer import Optimizer, get_optimizer
from alpa_mlir.models.params import Params, count_params
from alpa_mlir.models.precision import Precision
from alpa_mlir.models.registry import ModelSpec, get_model
from alpa_mlir.models.training import Batch, TrainStep

# example_inputs refuses to materialize models with more parameters than this.
MAX_EXAMPLE_PARAMS = 50_000_000


@dataclass(frozen=True)
class TrainStepSetup:
    """A model, a resolved config and an optimizer: everything one training step needs."""

    model: ModelSpec[Any]  # the zoo entry
    config: Any  # the model's config dataclass (preset + overrides)
    optimizer: Optimizer = field(default_factory=lambda: get_optimizer("adam"))
    precision: Precision = field(default_factory=Precision)  # compute dtype, loss scale

    def train_step(self) -> TrainStep:
        """`train_step(params, opt_state, batch) -> (new_params, new_opt_state, loss)`."""
        return self.model.make_train_step(self.config, self.optimizer, self.precision)

    def abstract_args(self) -> tuple[Params, Any, Batch]:
        """(params, opt_state, batch) as `jax.ShapeDtypeStruct` trees."""
        params = self.model.param_shapes(self.config)
        return params, self.optimizer.state_shapes(params), self.model.batch_shapes(self.config)

    def num_params(self) -> int:
        """Parameter count."""
        return self.model.num_params(self.config)

    def lower(self, *, donate: bool = True) -> jax.stages.Lowered:
        """The jitted step lowered on abstract arguments (unused arguments kept)."""
        step = jax.jit(self.train_step(), keep_unused=True, donate_argnums=(0, 1) if donate else ())
        return step.lower(*self.abstract_args())

    def argument_names(self) -> list[str]:
        """One name per @main argument: `params.<path>`, `opt_state.<path>`, `batch.<key>`."""
        params, opt_state, batch = self.abstract_args()
        return [
            *_leaf_names("params", params),
            *_leaf_names("opt_state", opt_state),
            *_leaf_names("batch", batch),
        ]

    def result_names(self) -> list[str]:
        """One name per @main result: `params.<path>`, `opt_state.<path>`, `loss`."""
        params, opt_state, _ = self.abstract_args()
        return [*_leaf_names("params", params), *_leaf_names("opt_state", opt_state), "loss"]

    def example_args(self, seed: int = 0) -> list[np.ndarray]:
        """Concrete inputs, one numpy array per @main argument (small models only).

        The optimizer state is that of a run in progress (`Optimizer.warm_state`), not a
        fresh one, which keeps the outputs well conditioned for equivalence checks.
        """
        n = self.num_params()
        if n > MAX_EXAMPLE_PARAMS:
            raise ModelConfigError(
                f"{self.model.name} has {n:,} parameters; example inputs are only built for "
                f"models up to {MAX_EXAMPLE_PARAMS:,} (use a smaller preset)"
            )
        params = self.model.init_params(self.config, seed)
        opt_state = self.optimizer.warm_state(params, np.random.default_rng(seed + 1))
        batch = self.model.example_batch(self.config, np.random.default_rng(seed))
        return [np.asarray(x) for x in jax.tree.leaves((params, opt_state, batch))]


def _key_name(key: Any) -> str:
    if isinstance(key, jax.tree_util.DictKey):
        return f".{key.key}"
    if isinstance(key, jax.tree_util.SequenceKey):
        return f"[{key.idx}]"
    if isinstance(key, jax.tree_util.GetAttrKey):
        return f".{key.name}"
    return jax.tree_util.keystr((key,))


def _leaf_names(prefix: str, tree: Any) -> list[str]:
    """`prefix` + the pytree path of each leaf, in flattening order."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [prefix + "".join(_key_name(k) for k in path) for path, _ in leaves]


def train_step_setup(
    model_name: str, preset: str = "tiny", *, optimizer: str | Optimizer | None = None,
    precision: str | Precision | None = None, **overrides: Any
) -> TrainStepSetup:
    """Look up `model_name`, apply `overrides` (config field -> value) to `preset`;
    `optimizer` is an optimizer or its name (`adam`, the default, or `adafactor`),
    `precision` a `Precision` or its name (`fp32`, `bf16`, `fp16`)."""
    model = get_model(model_name)
    chosen = precision if isinstance(precision, Precision) else Precision(precision or "fp32")
    opt = get_optimizer(optimizer) if isinstance(optimizer, str) else optimizer or get_optimizer("adam")
    return TrainStepSetup(model, model.config(preset, **overrides), opt, chosen)


def export_train_step(
    model_name: str,
    preset: str = "tiny",
    *,
    donate: bool = True,
    debug_info: bool = True,
    optimizer: str | Optimizer | None = None,
    precision: str | Precision | None = None,
    **overrides: Any,
) -> str:
    """StableHLO text of the model's training step (abstract shapes: no weights built)."""
    setup = train_step_setup(model_name, preset, optimizer=optimizer, precision=precision, **overrides)
    return setup.lower(donate=donate).as_text(debug_info=debug_info)


def example_inputs(
    model_name: str, preset: str = "tiny", *, seed: int = 0,
    optimizer: str | Optimizer | None = None, **overrides: Any
) -> list[np.ndarray]:
    """Random concrete inputs matching @main's arguments (token ids within the vocab)."""
    return train_step_setup(model_name, preset, optimizer=optimizer, **overrides).example_args(seed)


def argument_names(model_name: str, preset: str = "tiny", **overrides: Any) -> list[str]:
    """Names of @main's arguments, in order."""
    return train_step_setup(model_name, preset, **overrides).argument_names()


def result_names(model_name: str, preset: str = "tiny", **overrides: Any) -> list[str]:
    """Names of @main's results, in order."""
    return train_step_setup(model_name, preset, **overrides).result_names()


def num_params(model_name: str, preset: str = "tiny", **overrides: Any) -> int:
    """Parameter count of a preset, from abstract shapes."""
    return count_params(train_step_setup(model_name, preset, **overrides).abstract_args()[0])
