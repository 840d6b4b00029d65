"""Multi-process jobs on JAX's multi-controller runtime (`jax.distributed`).

```
 one process per host (here: per local process), all running the same program
   initialize(Job)   gloo CPU collectives, jax.distributed.initialize; jax.devices()
                     is then every process's devices (process-major), jax.local_devices()
                     this process's own
   put(value, s)     a host value (the same on every process) as a global jax.Array:
                     each process fills only its own shards
   to_host(array)    a global array's whole value on every process (an all-gather)
   collect(arrays)   whole values on process 0 (arrays on any subset of the processes)
 launch_local(cmd, P, D)   start P local processes of a command, D CPU devices each, one
                     coordinator on 127.0.0.1:<free port>; a process that dies stops the
                     others, and the error names it
```

Reads: the job's coordinator address, process count and id (a launcher or a cluster
scheduler gives them). Writes: JAX's distributed state (once per process).

Failure behaviour (jax 0.10.2, measured): JAX ends every surviving process (SIGABRT,
"tasks are unhealthy (stopped sending heartbeats): <task ids>") `heartbeat_timeout`
seconds after a process dies, and ends a process whose coordinator never answers
`init_timeout` seconds after it starts waiting; a Python exception is never raised. So
`initialize` first checks that the coordinator answers (a plain TCP connection, retried
until `init_timeout`), and bounds the join with its own deadline, to fail with a message
that says what is wrong. `launch_local` stops the other processes as soon as one dies.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec, Sharding

from .devices import xla_flags_cpu_device_count
from .errors import ExecutionError
from .process_order import ordered
from .union_transfer import UnionMover

DEFAULT_INIT_TIMEOUT = 60.0  # seconds for every process of the job to join
DEFAULT_HEARTBEAT_TIMEOUT = 10  # seconds after which JAX declares a silent process dead
LAUNCHER_PID = "ALPA_MLIR_LAUNCHER_PID"  # set by launch_local in the processes it starts
# The gloo library's connection chatter on stderr ("[Gloo] Rank 0 is connected to 7 peer
# ranks..."): not shown by the launcher.
_NOISE = re.compile(r"\[Gloo\]|connected to \d+ peer ranks|peer ranks\. Expected number of connected|^\d+$")


class JobError(ExecutionError):
    """A multi-process job that cannot start or lost a process."""


@dataclass(frozen=True)
class Job:
    """One process's view of a multi-process job."""

    coordinator: str  # HOST:PORT of process 0's coordination service
    num_processes: int
    process_id: int
    # CPU devices this process creates (None: as configured, e.g. by XLA_FLAGS).
    devices_per_process: int | None = None
    init_timeout: float = DEFAULT_INIT_TIMEOUT
    heartbeat_timeout: int = DEFAULT_HEARTBEAT_TIMEOUT

    def __post_init__(self) -> None:
        if self.num_processes < 1:
            raise JobError(f"the number of processes must be at least 1, got {self.num_processes}")
        if not 0 <= self.process_id < self.num_processes:
            raise JobError(f"the process id must be in [0, {self.num_processes}), got {self.process_id}")
        if self.devices_per_process is not None and self.devices_per_process < 1:
            raise JobError(f"devices per process must be at least 1, got {self.devices_per_process}")
        if not (self.init_timeout > 0 and self.heartbeat_timeout > 0):
            raise JobError("timeouts must be positive")
        parse_address(self.coordinator)

    @property
    def host(self) -> str:
        return parse_address(self.coordinator)[0]

    @property
    def port(self) -> int:
        return parse_address(self.coordinator)[1]


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (an IPv6 host in brackets) -> (host, port); JobError when malformed."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise JobError(f"coordinator address must be HOST:PORT with a port in 1..65535, got {text!r}")
    return host, int(port)


def initialize(job: Job) -> None:
    """Join the job: CPU collectives over gloo, `devices_per_process` CPU devices, then
    `jax.distributed.initialize`. Call before anything else uses jax's backend. Raises
    JobError when the coordinator does not answer; ends the process (exit status 1, a
    message on stderr) when the job does not form within `init_timeout`, where JAX would
    otherwise abort it."""
    if jax.distributed.is_initialized():
        raise JobError("jax.distributed is already initialized in this process")
    _die_with_launcher()
    if job.devices_per_process is not None:
        try:
            jax.config.update("jax_num_cpu_devices", job.devices_per_process)
        except RuntimeError:
            raise JobError("initialize() must run before jax's backend starts "
                           "(nothing may use jax devices before it)") from None
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    deadline = time.monotonic() + job.init_timeout
    if job.process_id != 0:
        _wait_for_coordinator(job, deadline)
    left = max(deadline - time.monotonic(), 1.0)
    watchdog = threading.Timer(left, _job_did_not_form, args=(job,))
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(
            coordinator_address=job.coordinator,
            num_processes=job.num_processes,
            process_id=job.process_id,
            # JAX's own deadline comes after ours, so ours reports the failure.
            initialization_timeout=int(left) + 30,
            heartbeat_timeout_seconds=job.heartbeat_timeout,
        )
    finally:
        watchdog.cancel()


def _wait_for_coordinator(job: Job, deadline: float) -> None:
    """Until `deadline`, try a TCP connection to the coordinator every half second."""
    host, port = parse_address(job.coordinator)
    last = ""
    while True:
        try:
            with socket.create_connection((host, port), timeout=2.0):
                return
        except OSError as err:
            last = err.strerror or str(err)
        if time.monotonic() >= deadline:
            raise JobError(f"process {job.process_id}: the coordinator {job.coordinator} does not answer "
                           f"({last}; tried for {job.init_timeout:g} s): is process 0 running, "
                           "and are the host and port right?")
        time.sleep(0.5)


def _job_did_not_form(job: Job) -> None:
    sys.stderr.write(
        f"error: process {job.process_id}: the job did not form within {job.init_timeout:g} s: "
        f"not every one of the {job.num_processes} processes joined the coordinator "
        f"{job.coordinator}\n")
    sys.stderr.flush()
    os._exit(1)


def is_multiprocess() -> bool:
    return jax.process_count() > 1


def job_devices(n: int) -> tuple[jax.Device, ...]:
    """The first `n` devices of the job (process-major): JobError when it has fewer."""
    devices = jax.devices()
    if len(devices) < n:
        per = len(jax.local_devices())
        raise JobError(f"{n} devices needed, but the job has {jax.process_count()} processes x "
                       f"{per} devices = {len(devices)}")
    return tuple(devices[:n])


# ------------------------------------------------------------------------- values


def put(value: np.ndarray | jax.Array, sharding: Sharding) -> jax.Array:
    """`value` (the same on every process) as a jax.Array with `sharding`; across
    processes each process copies only the shards on its own devices."""
    if sharding.is_fully_addressable:
        return jax.device_put(value, sharding)
    if isinstance(value, jax.Array):
        if value.is_fully_addressable:
            value = np.asarray(value)
        else:  # already global: a reshard over the devices it lives on, waited for
            return ordered(lambda: jax.jit(lambda x: x, out_shardings=sharding)(value))
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index], dtype=host.dtype)


def to_host(array: jax.Array) -> np.ndarray:
    """The whole value of `array` as numpy; an array spanning processes is all-gathered
    (every process of the job must call this, in the same order)."""
    if array.is_fully_addressable:
        return np.asarray(array)
    from jax.experimental import multihost_utils
    return np.asarray(ordered(lambda: multihost_utils.process_allgather(array, tiled=True)))


def collect(arrays: Sequence[jax.Array], mover: UnionMover | None = None) -> list[np.ndarray | None]:
    """Each array's whole value on process 0 and on every process owning one of its
    devices; None on the others. Every process of the job calls this with the same
    arrays in the same order. An array on process 0's devices (among others) is
    replicated over its own devices; one on other processes only is moved to a device of
    process 0 by a program over both (`union_transfer`)."""
    mover = mover or UnionMover()
    me = jax.process_index()
    out: list[np.ndarray | None] = []
    for array in arrays:
        device_set: set[jax.Device] = array.sharding.device_set
        devices = sorted(device_set, key=lambda d: d.id)
        owners = {d.process_index for d in devices}
        whole: jax.Array | None = None
        if owners == {me}:  # this process's alone (every process decides alike below)
            whole = array
            if me != 0:  # ... and process 0 gets a copy
                mover.move(array, _first_device_of_process_0())
        elif 0 in owners:
            whole = _replicate(array, devices) if me in owners else None
        elif me == 0 or me in owners:
            whole = mover.move(array, _first_device_of_process_0())
        out.append(_local_copy(whole))
    return out


def _first_device_of_process_0() -> NamedSharding:
    first = next(d for d in jax.devices() if d.process_index == 0)
    return NamedSharding(Mesh(np.array([first]), ("p",)), PartitionSpec())


def _local_copy(array: jax.Array | None) -> np.ndarray | None:
    if array is None or not array.addressable_shards:
        return None
    return np.asarray(array) if array.is_fully_addressable else np.asarray(array.addressable_shards[0].data)


def _replicate(array: jax.Array, devices: Sequence[jax.Device]) -> jax.Array:
    mesh = Mesh(np.array(devices, dtype=object), ("all",))
    return ordered(
        lambda: jax.jit(lambda x: x, out_shardings=NamedSharding(mesh, PartitionSpec()))(array))


# ------------------------------------------------------------------------- launching


@dataclass(frozen=True)
class LaunchResult:
    """How a local multi-process job ended."""

    returncodes: tuple[int | None, ...]  # per process (None: stopped by the launcher)
    failed: int | None  # the process that died first, if one died while others ran
    message: str  # "" when every process finished by itself

    @property
    def status(self) -> int:
        """0 when every process exited 0; else 1."""
        return 0 if all(c == 0 for c in self.returncodes) else 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_environment(devices_per_process: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a launched process: `devices_per_process` CPU devices."""
    env = dict(os.environ if base is None else base)
    flags = env.get("XLA_FLAGS", "")
    if xla_flags_cpu_device_count(flags) is not None:
        flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", flags)
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices_per_process}".strip()
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env[LAUNCHER_PID] = str(os.getpid())
    return env


def _die_with_launcher() -> None:
    """In a process `launch_local` started (Linux): be killed when the launcher dies, even
    by SIGKILL, instead of waiting forever for peers that are gone."""
    launcher = os.environ.get(LAUNCHER_PID)
    if launcher is None or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if str(os.getppid()) != launcher:  # it died before the line above
        os._exit(1)


def launch_local(
    command: Callable[[int, str], Sequence[str]],
    num_processes: int,
    devices_per_process: int,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    grace: float = 10.0,
) -> LaunchResult:
    """Run `command(process_id, coordinator)` as `num_processes` local processes and wait.

    Process 0's stdout goes to `out`; every process's stderr to `err`, lines of
    processes other than 0 prefixed `[process i]` (gloo's connection chatter dropped).
    When a process exits with a failure while others still run, the others get `grace`
    seconds to finish, then are stopped, and the result names the one that failed first;
    when it was killed by a signal, what the others print afterwards (JAX's own report
    that a peer died) is not shown.
    """
    launch = _Launch(out or sys.stdout, err or sys.stderr)
    coordinator = f"127.0.0.1:{free_port()}"
    env = child_environment(devices_per_process)
    try:
        for i in range(num_processes):
            launch.start(i, list(command(i, coordinator)), env)
        result = launch.watch(grace)
    finally:
        launch.stop_all()  # never leave a process behind (KeyboardInterrupt included)
    if result.message:
        launch.write(-1, result.message + "\n")
    return result


class _Launch:
    """The processes of a local job, the threads copying their output, who failed."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err
        self.procs: list[subprocess.Popen[str]] = []
        self.pumps: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.failed: int | None = None
        self.muted = False  # the failed process was killed: the others' reports are echoes
        self.stopped: set[int] = set()

    def start(self, i: int, argv: list[str], env: dict[str, str]) -> None:
        p = subprocess.Popen(argv, env=env, text=True, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE if i == 0 else subprocess.DEVNULL,
                             stderr=subprocess.PIPE, errors="replace")
        self.procs.append(p)
        if p.stdout is not None:
            self._pump(i, p.stdout, self.out, "")
        assert p.stderr is not None
        self._pump(i, p.stderr, self.err, "" if i == 0 else f"[process {i}] ")

    def _pump(self, i: int, stream: Any, sink: TextIO, prefix: str) -> None:
        def copy() -> None:
            for line in stream:
                if not _NOISE.search(line):
                    self.write(i, prefix + line, sink)
        thread = threading.Thread(target=copy, daemon=True)
        thread.start()
        self.pumps.append(thread)

    def write(self, i: int, text: str, sink: TextIO | None = None) -> None:
        with self.lock:
            if i >= 0 and self.muted and i != self.failed:
                return  # a consequence of the failure, reported by the launcher
            sink = sink or self.err
            sink.write(text)
            sink.flush()

    def watch(self, grace: float) -> LaunchResult:
        failed_at = 0.0
        while True:
            codes = [p.poll() for p in self.procs]
            if all(c is not None for c in codes):
                break
            if self.failed is None:
                bad = [i for i, c in enumerate(codes) if c not in (None, 0)]
                if bad:
                    # A process JAX aborted (SIGABRT) because another died is a consequence.
                    causes = [i for i in bad if codes[i] != -signal.SIGABRT] or bad
                    with self.lock:
                        self.failed = causes[0]
                        self.muted = (codes[self.failed] or 0) < 0
                    failed_at = time.monotonic()
            elif time.monotonic() - failed_at > grace:
                self.stop_all()
                break
            time.sleep(0.05)
        for t in self.pumps:
            t.join(timeout=5)
        final = tuple(p.returncode for p in self.procs)
        failed = self.failed
        if failed is None or (not self.stopped and all(c is not None and c >= 0 for c in final)):
            # Every process finished by itself (each reported its own errors, e.g. a
            # reference check that failed on process 0 only).
            return LaunchResult(final, None, "")
        message = (f"error: process {failed} of {len(self.procs)} {_describe_exit(final[failed])} "
                   "while the others were running")
        if self.stopped:
            listed = ", ".join(map(str, sorted(self.stopped)))
            message += f"; stopped process{'es' if len(self.stopped) > 1 else ''} {listed}"
        return LaunchResult(final, failed, message)

    def stop_all(self) -> None:
        for i, p in enumerate(self.procs):
            if p.poll() is None:
                self.stopped.add(i)
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "did not finish"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by signal {-code} ({signal.Signals(-code).name})"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"
