"""Multi-process jobs (JAX's multi-controller runtime, 2 processes x 4 CPU devices):
an SPMD plan and a pipeline plan with stages on both processes equal the single-device
step over 5 training steps fed back; a killed process, a coordinator that does not
answer and a job too small for the plan give clear errors, never a hang.

The launcher's own logic (who failed first, stopping the others) is checked with plain
Python child processes; the jobs run `alpa-run` as users do."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alpa_mlir.dialect_utils.context import make_context, parse_module, print_module
from alpa_mlir.models.export import example_inputs, export_train_step
from alpa_mlir.passes.pass_manager import PassManager
from alpa_mlir.passes.pipeshard.offload import offload_activations
from alpa_mlir.runtime import distributed
from alpa_mlir.runtime.distributed import Job, JobError, launch_local, parse_address
from alpa_mlir.runtime.inputs import save_inputs

ALPA_RUN = [sys.executable, "-m", "alpa_mlir.tools.alpa_run"]
TWO_HOST_STAGES = ("alpa-pipeshard{devices=2x4 num-microbatches=4 layers=2 stages=manual "
                   "layer-ranges=0-0,1-1 stage-submeshes=1x4,1x4 stage-logical-shapes=2x2,1x4}")


# ----------------------------------------------------------------- the job's parts


def test_addresses() -> None:
    assert parse_address("127.0.0.1:1234") == ("127.0.0.1", 1234)
    assert parse_address("[::1]:80") == ("::1", 80)
    for bad in ("localhost", "host:", ":80", "host:0", "host:70000", "host:x"):
        with pytest.raises(JobError, match="HOST:PORT"):
            parse_address(bad)


def test_job_values_are_checked() -> None:
    with pytest.raises(JobError, match=r"process id must be in \[0, 2\), got 2"):
        Job("127.0.0.1:1234", 2, 2)
    with pytest.raises(JobError, match="at least 1"):
        Job("127.0.0.1:1234", 0, 0)
    with pytest.raises(JobError, match="devices per process"):
        Job("127.0.0.1:1234", 2, 0, devices_per_process=0)


def test_child_environment_sets_the_device_count() -> None:
    env = distributed.child_environment(4, {"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --foo"})
    assert env["XLA_FLAGS"].split() == ["--foo", "--xla_force_host_platform_device_count=4"]
    assert env["JAX_PLATFORMS"] == "cpu" and env[distributed.LAUNCHER_PID] == str(os.getpid())


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_killed_process_stops_the_others_and_is_named() -> None:
    """Process 1 kills itself; process 0 would run for 10 minutes: it is stopped after
    the grace period and the error names process 1 and the signal."""
    def command(i: int, coordinator: str) -> list[str]:
        if i == 1:
            return python("import os, time; time.sleep(0.5); os.kill(os.getpid(), 9)")
        return python("import time; time.sleep(600)")

    started = time.monotonic()
    with open(os.devnull, "w") as devnull:
        result = launch_local(command, 2, 1, grace=1.0, out=devnull, err=devnull)
    assert time.monotonic() - started < 30
    assert result.failed == 1 and result.status == 1
    assert result.message == ("error: process 1 of 2 was killed by signal 9 (SIGKILL) while the others "
                              "were running; stopped process 0")


def test_processes_that_all_report_the_same_error_end_quietly(tmp_path: Path) -> None:
    """Every process exits 1 by itself (as all do after a failed reference check): the
    status is 1, nobody is stopped, no launcher message; process 0's output is shown."""
    out, err = tmp_path / "out", tmp_path / "err"
    def command(i: int, coordinator: str) -> list[str]:
        return python(f"import sys, time; time.sleep({0.1 * i}); print('hello from', {i}); "
                      f"print('problem', {i}, file=sys.stderr); sys.exit(1)")

    with out.open("w") as o, err.open("w") as e:
        result = launch_local(command, 3, 1, out=o, err=e)
    assert result.status == 1 and result.message == "" and result.returncodes == (1, 1, 1)
    assert out.read_text() == "hello from 0\n"
    assert sorted(err.read_text().splitlines()) == ["[process 1] problem 1", "[process 2] problem 2", "problem 0"]


def test_a_process_that_reports_a_failure_itself_is_not_called_dead() -> None:
    """Process 0 exits 1 (a failed reference check is checked there only) while process 1
    still runs and then exits 0: status 1, and no launcher message about a dead process."""
    def command(i: int, coordinator: str) -> list[str]:
        return python("import sys; sys.exit(1)") if i == 0 else python("import time; time.sleep(0.5)")

    with open(os.devnull, "w") as devnull:
        result = launch_local(command, 2, 1, out=devnull, err=devnull)
    assert result.returncodes == (1, 0) and result.status == 1
    assert result.failed is None and result.message == ""


# ----------------------------------------------------------------- jobs of alpa-run


@functools.cache
def gpt_tiny(pipeline: str) -> str:
    ctx = make_context()
    module = parse_module(export_train_step("gpt", "tiny", debug_info=False), ctx)
    PassManager.parse(f"builtin.module({pipeline})", ctx).run(module)
    return print_module(module)


def gpt_inputs(tmp_path: Path) -> str:
    """The model's example inputs (random inputs make NaNs within 5 Adam steps)."""
    path = tmp_path / "gpt.inputs.npz"
    save_inputs(path, example_inputs("gpt", "tiny", seed=0))
    return str(path)


def alpa_run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return subprocess.run([*ALPA_RUN, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


def bytes_across_processes(stdout: str) -> int:
    """From `per step on this process: ... (B bytes across meshes, N across processes, ...)`."""
    line = next(x for x in stdout.splitlines() if x.startswith("per step on this process"))
    return int(line.split(" across processes")[0].rsplit(" ", 1)[1])


def test_spmd_plan_on_two_processes_equals_single_device_steps(tmp_path: Path) -> None:
    path = tmp_path / "gpt.spmd.mlir"
    path.write_text(gpt_tiny("alpa-auto-sharding{mesh=2x4 cluster=p3.16xlarge},canonicalize"))
    proc = alpa_run(str(path), "--num-processes", "2", "--steps", "5", "--reference",
                    "--inputs", gpt_inputs(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "job: process 0 of 2, 4 devices each" in proc.stdout
    assert "mesh: x=2 y=4 on cpu devices [0, 1, 2, 3, 2048, 2049, 2050, 2051]" in proc.stdout
    assert "step 5:" in proc.stdout
    assert "reference check: PASS (110 outputs match)" in proc.stdout
    assert "Gloo" not in proc.stdout + proc.stderr


def test_pipeline_plan_with_a_stage_per_process_equals_single_device_steps(tmp_path: Path) -> None:
    path = tmp_path / "gpt.mpmd.mlir"
    path.write_text(gpt_tiny(TWO_HOST_STAGES))
    out = tmp_path / "out.npz"
    proc = alpa_run(str(path), "--num-processes", "2", "--steps", "5", "--reference", "--outputs", str(out),
                    "--inputs", gpt_inputs(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "topology: stage0 x=2 y=2 on devices [0,1,2,3] (process 0)" in proc.stdout
    assert "topology: stage1 x=1 y=4 on devices [2048,2049,2050,2051] (process 1)" in proc.stdout
    assert "reference check: PASS (110 outputs match)" in proc.stdout
    assert out.is_file()
    assert bytes_across_processes(proc.stdout) > 0


SLOW_LINK_CLUSTER = {
    "name": "two-hosts-slow-link", "description": "2 hosts x 4 devices, a slow link between them",
    "hosts": 2, "devices_per_host": 4,
    "device": {"peak_flops": 1.25e14, "memory_bytes": 1.6e10},
    "intra_host": {"bandwidth": 1.3e11, "latency": 5e-6},
    "inter_host": {"bandwidth": 1e8, "latency": 1e-4},
}


def test_auto_plan_for_two_hosts_with_a_slow_link(tmp_path: Path) -> None:
    """The stage DP's own plan for 2 hosts with a slow link between them keeps each
    stage inside a host; host h of the plan is process h, and the job equals one device."""
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps(SLOW_LINK_CLUSTER))
    path = tmp_path / "gpt.mpmd.mlir"
    path.write_text(gpt_tiny(f"alpa-pipeshard{{cluster={cluster} num-microbatches=4}}"))
    proc = alpa_run(str(path), "--num-processes", "2", "--steps", "2", "--reference",
                    "--inputs", gpt_inputs(tmp_path))
    assert proc.returncode == 0, proc.stderr
    processes = [line.rsplit("(process ", 1)[1].rstrip(")") for line in proc.stdout.splitlines()
                 if line.startswith("topology:")]
    assert len(processes) > 1 and set(processes) == {"0", "1"}  # every stage on one host, both used
    assert "reference check: PASS (110 outputs match)" in proc.stdout


def test_stages_spanning_both_processes(tmp_path: Path) -> None:
    """2x2 submeshes: every stage has devices on both processes (its fragments' collectives
    cross processes, and each process sends and receives parts of every move)."""
    path = tmp_path / "gpt.mpmd.mlir"
    path.write_text(gpt_tiny(TWO_HOST_STAGES.replace("1x4,1x4", "2x2,2x2").replace("2x2,1x4", "2x2,4x1")))
    proc = alpa_run(str(path), "--num-processes", "2", "--steps", "2", "--reference",
                    "--inputs", gpt_inputs(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "topology: stage0 x=2 y=2 on devices [0,1,2048,2049] (process 0, 1)" in proc.stdout
    assert "reference check: PASS (110 outputs match)" in proc.stdout


def test_offloaded_activations_on_stages_spanning_both_processes(tmp_path: Path) -> None:
    """Every stage on both processes, both layers' stashes offloaded to pinned host
    memory: each process copies its own shards to the host and back."""
    module = parse_module(gpt_tiny(TWO_HOST_STAGES.replace("1x4,1x4", "2x2,2x2").replace("2x2,1x4", "2x2,4x1")),
                          make_context())
    assert offload_activations(module, {0, 1}) > 0
    path = tmp_path / "gpt.offloaded.mlir"
    path.write_text(print_module(module))
    proc = alpa_run(str(path), "--num-processes", "2", "--steps", "2", "--reference",
                    "--inputs", gpt_inputs(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "offloaded on this process: 512 copies between device and host memory" in proc.stdout
    assert "reference check: PASS (110 outputs match)" in proc.stdout


def test_local_all_gather_sends_fewer_bytes_between_processes(tmp_path: Path) -> None:
    """Stage 1's replicated inputs: Alpa's local all-gather sends 1/4 of each over the
    link between the processes and all-gathers inside process 1; device_put sends 4."""
    path = tmp_path / "gpt.mpmd.mlir"
    path.write_text(gpt_tiny(TWO_HOST_STAGES))
    across = {}
    for kind in ("device-put", "local-all-gather"):
        proc = alpa_run(str(path), "--num-processes", "2", "--transfer", kind)
        assert proc.returncode == 0, proc.stderr
        across[kind] = bytes_across_processes(proc.stdout)
    assert 0 < across["local-all-gather"] < across["device-put"]


def long_job(tmp_path: Path) -> subprocess.Popen[str]:
    """A launcher running an SPMD plan on 2 processes for a long time, returned once
    process 0 has compiled it (the job has formed)."""
    path = tmp_path / "gpt.spmd.mlir"
    path.write_text(gpt_tiny("alpa-auto-sharding{mesh=2x4 cluster=p3.16xlarge},canonicalize"))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    launcher = subprocess.Popen([*ALPA_RUN, str(path), "--num-processes", "2", "--repeat", "100000"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                stdin=subprocess.DEVNULL)
    assert launcher.stdout is not None
    for line in launcher.stdout:
        if line.startswith("compile:"):
            break
    return launcher


def children(pid: int) -> dict[int, str]:
    """pid -> command line (arguments joined by spaces) of `pid`'s child processes."""
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(c): Path(f"/proc/{c}/cmdline").read_text().replace("\x00", " ") for c in found}


def test_a_killed_process_is_reported_within_a_minute(tmp_path: Path) -> None:
    launcher = long_job(tmp_path)
    try:
        victim = next(c for c, cmd in children(launcher.pid).items() if "--process-id 1 " in cmd)
        os.kill(victim, 9)
        killed = time.monotonic()
        _, err = launcher.communicate(timeout=60)
        assert time.monotonic() - killed < 60
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 1
    assert "error: process 1 of 2 was killed by signal 9 (SIGKILL) while the others were running" in err


def test_the_processes_end_with_their_launcher(tmp_path: Path) -> None:
    """A launcher killed outright (SIGKILL, no cleanup) leaves no process behind."""
    launcher = long_job(tmp_path)
    started = list(children(launcher.pid))
    assert len(started) == 2
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{c}").exists() for c in started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(Path(f"/proc/{c}/cmdline").exists() and Path(f"/proc/{c}/cmdline").read_text()
                   for c in started)


def test_a_coordinator_that_does_not_answer(tmp_path: Path) -> None:
    path = tmp_path / "gpt.spmd.mlir"
    path.write_text(gpt_tiny("alpa-auto-sharding{mesh=2x4 cluster=p3.16xlarge},canonicalize"))
    port = distributed.free_port()
    proc = alpa_run(str(path), "--num-processes", "2", "--process-id", "1", "--coordinator",
                    f"127.0.0.1:{port}", "--join-timeout", "2", timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"alpa-run: error: process 1: the coordinator 127.0.0.1:{port} does not "
                                  "answer (Connection refused; tried for 2 s)")
    proc = alpa_run(str(path), "--num-processes", "2", "--process-id", "0", "--coordinator",
                    f"127.0.0.1:{port}", "--join-timeout", "2", timeout=60)
    assert proc.returncode == 1
    assert ("error: process 0: the job did not form within 2 s: not every one of the 2 processes "
            f"joined the coordinator 127.0.0.1:{port}") in proc.stderr


def test_a_job_that_does_not_fit_the_plan(tmp_path: Path) -> None:
    path = tmp_path / "gpt.spmd.mlir"
    path.write_text(gpt_tiny("alpa-auto-sharding{mesh=2x4 cluster=p3.16xlarge},canonicalize"))
    proc = alpa_run(str(path), "--num-processes", "2", "--devices-per-process", "2")
    assert proc.returncode == 1
    assert "alpa-run: error: 8 devices needed, but the job has 2 processes x 2 devices = 4\n" in proc.stderr
    proc = alpa_run(str(path), "--num-processes", "2", "--devices-per-process", "8")
    assert proc.returncode == 1
    assert ("alpa-run: error: the module runs on 8 devices, but the job's first 8 devices leave process(es) 1 "
            "without one (2 processes x 8 devices): give each process 4 devices (--devices-per-process 4)\n"
            ) in proc.stderr


def test_job_flags_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "m.mlir"
    path.write_text("module {}")
    for args, message in (
        (["--num-processes", "0"], "--num-processes must be at least 1, got 0"),
        (["--coordinator", "127.0.0.1:1"], "--coordinator and --process-id go together"),
        (["--num-processes", "2", "--process-id", "2", "--coordinator", "h:1"], "--process-id must be in [0, 2)"),
        (["--num-processes", "2", "--process-id", "0", "--coordinator", "h"], "--coordinator: coordinator address"),
        (["--devices-per-process", "2"], "--devices-per-process applies to jobs of several processes"),
    ):
        proc = alpa_run(str(path), *args, timeout=60)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
    proc = subprocess.run([*ALPA_RUN, "-", "--num-processes", "2"], input="module {}", capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and "--num-processes needs a module file" in proc.stderr
