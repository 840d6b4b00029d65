"""alpa_mlir.runtime.process_order: programs spanning processes are chained per device by
a token (8 fake CPU devices in one process, conftest.py's `devs`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from alpa_mlir.runtime import process_order
from alpa_mlir.runtime.union_transfer import UnionMover


def _rows(devices: list[jax.Device]) -> NamedSharding:
    return NamedSharding(Mesh(np.array(devices, dtype=object), ("u",)), P("u"))


def _next_token(rows: NamedSharding):  # type: ignore[no-untyped-def]
    return jax.jit(lambda t: t + 1, in_shardings=rows, out_shardings=rows)


def test_each_device_gets_the_last_token_made_on_it(devs: tuple[jax.Device, ...]) -> None:
    first, second = _rows(list(devs[4:7])), _rows([devs[7], devs[5]])
    seen: list[np.ndarray] = []

    def program(rows: NamedSharding):  # type: ignore[no-untyped-def]
        def dispatch(token: jax.Array) -> tuple[None, jax.Array]:
            seen.append(np.asarray(token))
            return None, _next_token(rows)(token)
        return dispatch

    process_order.chained(first, program(first))
    process_order.chained(first, program(first))
    process_order.chained(second, program(second))
    process_order.settle()
    # devices 4..6 ran twice; device 7 starts from 0, device 5 continues from 2
    assert [list(s) for s in seen[1:]] == [[1, 1, 1], [0, 2]]
    assert seen[0].tolist() == [seen[0][0]] * 3  # whatever earlier tests left, one value


def _tokens_of(devices: list[jax.Device]) -> list[int]:
    """The tokens a program chained over `devices` would get now (it then advances them)."""
    rows = _rows(devices)
    got: list[list[int]] = []

    def dispatch(token: jax.Array) -> tuple[None, jax.Array]:
        got.append(np.asarray(token).tolist())
        return None, _next_token(rows)(token)
    process_order.chained(rows, dispatch)
    return got[0]


def test_moves_advance_the_tokens_of_their_devices(devs: tuple[jax.Device, ...]) -> None:
    src = NamedSharding(Mesh(np.array(devs[:2], dtype=object), ("x",)), P("x"))
    dst = NamedSharding(Mesh(np.array(devs[2:4], dtype=object), ("x",)), P())
    x = jax.device_put(np.arange(8.0, dtype=np.float32).reshape(2, 4), src)
    before = _tokens_of(list(devs[:4]))
    mover = UnionMover()
    out = mover.move(mover.move(x, dst), src)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(x))
    assert _tokens_of(list(devs[:4])) == [t + 3 for t in before]  # the probe's own + 2 moves


def test_ordered_waits_for_the_chained_programs_and_its_own(devs: tuple[jax.Device, ...]) -> None:
    rows = _rows(list(devs[:2]))
    m = jax.device_put(np.full((2, 1000, 1000), 1e-3, np.float32), NamedSharding(rows.mesh, P("u")))

    @jax.jit
    def slow(token: jax.Array, m: jax.Array) -> jax.Array:  # ~0.1 s a device on this machine
        return token + (jnp.sum(m[0] @ m[0] @ m[0]) > 1e30).astype(token.dtype)

    tokens: list[jax.Array] = []

    def dispatch(token: jax.Array) -> tuple[None, jax.Array]:
        tokens.append(slow(token, m))
        return None, tokens[-1]
    process_order.chained(rows, dispatch)
    chained_ready_at_once = tokens[0].is_ready()
    out = process_order.ordered(lambda: jax.device_put(np.ones(3), devs[0]))
    assert not chained_ready_at_once  # chained: not waited for
    assert out.is_ready() and tokens[0].is_ready()
