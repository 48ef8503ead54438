"""Snakemake through a real SLURM cluster (`--executor slurm`).

Start a one-node cluster with `bash .ci/slurm-up.sh`. Without an answering
cluster these tests are skipped, unless IHDM_REQUIRE_SLURM=1, where they fail.
The fixture `slurm_cluster` and the helper `run_snakemake_slurm` are meant to
be reused by workflow tests (e.g. the pipeline on config/test.yaml through
workflow/profiles/slurm).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import in_background

REQUIRE_ENV = "IHDM_REQUIRE_SLURM"
REPO_ROOT = Path(__file__).resolve().parents[1]

# Options every SLURM run needs on the CI cluster: no accounting database, so
# job states come from squeue (finished jobs stay listed for MinJobAge=3600 s).
# `--slurm-no-account` has no effect in plugin 2.8.0: it tries to guess an
# account with sacct, fails, and submits without one, which is what we want.
# Status checks start 1 s after submission, then back off by 10 s per check.
SLURM_EXECUTOR_ARGS: tuple[str, ...] = (
    "--executor",
    "slurm",
    "--slurm-status-command",
    "squeue",
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--slurm-keep-successful-logs",
)


@dataclass(frozen=True)
class SlurmCluster:
    """What the answering SLURM cluster offers."""

    node: str
    cpus: int
    partitions: tuple[str, ...]
    default_partition: str


@dataclass
class BackgroundSnakemake:
    """A Snakemake run in `work` left running, its stdout and stderr going to `output`."""

    proc: subprocess.Popen
    work: Path
    output: Path
    started: float

    @classmethod
    def start(cls, cmd: list[str], *, work: Path, env: dict[str, str], output: Path) -> BackgroundSnakemake:
        with open(output, "w") as fh:
            proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT)
        return cls(proc, work, output, time.monotonic())

    def wait(self, timeout: float) -> tuple[int, str]:
        try:
            self.proc.wait(timeout=max(timeout - (time.monotonic() - self.started), 1))
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"snakemake ran over {timeout:.0f} s:\n{self.output.read_text()[-6000:]}")
        return self.proc.returncode, self.output.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # Snakemake cancels its SLURM jobs
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _query(*cmd: str) -> str:
    """Run a SLURM client command and return its stdout (raises on failure)."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True)
    return done.stdout


def _probe_slurm() -> SlurmCluster | str:
    """The cluster, or the reason why none answers."""
    for tool in ("sinfo", "sbatch", "squeue", "scontrol"):
        if shutil.which(tool) is None:
            return f"`{tool}` not on PATH"
    try:
        _query("scontrol", "ping")
        rows = _query("sinfo", "--noheader", "--Node", "--format=%N|%P|%c|%T").split()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
        said = " / ".join(
            str(part).strip().splitlines()[0]
            for part in (getattr(err, "stdout", None), getattr(err, "stderr", None))
            if part and str(part).strip()
        )
        return f"SLURM does not answer ({err}): {said or 'no output'}"
    usable = ("idle", "mixed", "allocated", "completing")
    nodes: dict[str, int] = {}
    partitions: list[str] = []
    default = ""
    for row in rows:
        node, partition, cpus, state = row.split("|")
        if partition.endswith("*"):
            partition = partition[:-1]
            default = partition
        if partition not in partitions:
            partitions.append(partition)
        if state.rstrip("*~#!%$@^-") in usable and not state.endswith("*"):
            nodes[node] = int(cpus)
    if not nodes:
        return f"no SLURM node is up (sinfo: {' '.join(rows) or 'empty'})"
    node = next(iter(nodes))
    return SlurmCluster(
        node=node,
        cpus=nodes[node],
        partitions=tuple(partitions),
        default_partition=default or partitions[0],
    )


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    """An answering SLURM cluster; skips (or fails under IHDM_REQUIRE_SLURM=1) without one."""
    return require_slurm()


def require_slurm() -> SlurmCluster:
    """The answering cluster, or pytest.skip (pytest.fail under IHDM_REQUIRE_SLURM=1)."""
    found = _probe_slurm()
    if isinstance(found, SlurmCluster):
        return found
    message = f"no SLURM cluster: {found}; start one with `bash .ci/slurm-up.sh`"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {message}", pytrace=False)
    pytest.skip(message)


def slurm_snakemake_command(
    workdir: Path,
    *args: str,
    snakefile: Path | None = None,
    profile: Path | None = None,
    jobs: int = 2,
) -> tuple[list[str], dict[str, str]]:
    """The Snakemake command line (with the executor options, then `args`) and the
    environment of a SLURM run in `workdir`."""
    cmd = [sys.executable, "-m", "snakemake", "--directory", str(workdir)]
    if snakefile is not None:
        cmd += ["--snakefile", str(snakefile)]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    cmd += [*SLURM_EXECUTOR_ARGS, "--jobs", str(jobs), "--latency-wait", "10"]
    cmd += ["--printshellcmds", "--show-failed-logs", *args]
    env = {k: v for k, v in os.environ.items() if k != "SNAKEMAKE_PROFILE"}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    return cmd, env


def run_snakemake_slurm(
    workdir: Path,
    *args: str,
    snakefile: Path | None = None,
    profile: Path | None = None,
    jobs: int = 2,
    timeout_s: float = 600.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run Snakemake in `workdir` with the SLURM executor; stdout holds stdout+stderr.

    `args` go after the executor options (targets, `--config`, `--default-resources`, ...).
    The process runs with cwd=`workdir`, so `.snakemake/slurm_logs` lands there.
    On timeout Snakemake gets SIGTERM (it cancels its SLURM jobs) and the test fails.
    """
    cmd, env = slurm_snakemake_command(workdir, *args, snakefile=snakefile, profile=profile,
                                       jobs=jobs)
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        pytest.fail(
            f"snakemake --executor slurm ran over {timeout_s:.0f}s in {workdir}:\n{out[-6000:]}"
        )
    done = subprocess.CompletedProcess(cmd, proc.returncode, out, "")
    if check and done.returncode != 0:
        pytest.fail(
            f"snakemake --executor slurm exited {done.returncode} in {workdir}:\n{out[-6000:]}"
        )
    return done


def read_job_record(path: Path) -> dict[str, str]:
    """Parse the `key=value` lines a test rule writes about its SLURM job."""
    record: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            record[key] = value
    return record


# Shell that describes the SLURM job it runs in, as `key=value` lines.
_RECORD_JOB = (
    'echo "job_id=${{SLURM_JOB_ID:-}}"; '
    'echo "job_partition=${{SLURM_JOB_PARTITION:-}}"; '
    'echo "node=$(hostname -s)"; '
    "squeue --noheader --jobs \"$SLURM_JOB_ID\" --format='queue=%P|%l|%m|%C'"
)


def _tiny_snakefile(partition_b: str, threads_c: int) -> str:
    """Three rules: a and b are independent, c gathers both."""
    return textwrap.dedent(
        f'''
        rule all:
            input: "c.txt"

        rule a:
            output: "a.txt"
            threads: 1
            resources: runtime=3, mem_mb=150
            shell: """({_RECORD_JOB}) > {{output}}"""

        rule b:
            output: "b.txt"
            threads: 1
            resources: runtime=4, mem_mb=250, slurm_partition="{partition_b}"
            shell: """({_RECORD_JOB}) > {{output}}"""

        rule c:
            input: "a.txt", "b.txt"
            output: "c.txt"
            threads: {threads_c}
            resources: runtime=2, mem_mb=100
            shell: """({_RECORD_JOB}; cat {{input}} | grep -c '^job_id=[0-9]') > {{output}}"""
        '''
    )


def _tiny_layout(cluster: SlurmCluster) -> tuple[str, int]:
    """Rule b's partition (another than the default when there is one) and c's threads."""
    partition_b = next((p for p in cluster.partitions if p != cluster.default_partition),
                       cluster.default_partition)
    return partition_b, min(2, cluster.cpus)


def start_tiny_run(tmp: Path) -> BackgroundSnakemake:
    """The three-rule workflow through SLURM, started with the session: its jobs are
    shell one-liners, so it waits on SLURM's status checks while other tests run."""
    cluster = require_slurm()
    partition_b, threads_c = _tiny_layout(cluster)
    snakefile = tmp / "Snakefile"
    snakefile.write_text(_tiny_snakefile(partition_b, threads_c))
    cmd, env = slurm_snakemake_command(
        tmp, "--default-resources", f"slurm_partition='{cluster.default_partition}'",
        snakefile=snakefile)
    return BackgroundSnakemake.start(cmd, work=tmp, env=env, output=tmp / "snakemake.out")


@in_background(start_tiny_run)
def test_snakemake_runs_rules_as_slurm_jobs(background_run: BackgroundSnakemake) -> None:
    """Each rule becomes its own sbatch job with the rule's partition, time, memory and CPUs."""
    slurm_cluster = require_slurm()
    partition_b, threads_c = _tiny_layout(slurm_cluster)
    code, out = background_run.wait(timeout=480)
    assert code == 0, out[-6000:]
    tmp_path = background_run.work

    expected = {
        "a": (slurm_cluster.default_partition, "3:00", "150M", "1"),
        "b": (partition_b, "4:00", "250M", "1"),
        "c": (slurm_cluster.default_partition, "2:00", "100M", str(threads_c)),
    }
    job_ids: dict[str, str] = {}
    for rule, (partition, time_limit, memory, cpus) in expected.items():
        txt = tmp_path / f"{rule}.txt"
        assert txt.is_file(), f"rule {rule} wrote no {txt.name}:\n{out[-3000:]}"
        record = read_job_record(txt)
        assert record["job_id"].isdigit(), f"rule {rule} ran outside SLURM: {record}"
        assert record["job_partition"] == partition
        assert record["node"] == slurm_cluster.node
        assert record["queue"] == f"{partition}|{time_limit}|{memory}|{cpus}", rule
        job_ids[rule] = record["job_id"]
        # With --slurm-keep-successful-logs the sbatch output stays per rule and job id.
        slurm_log = tmp_path / ".snakemake" / "slurm_logs" / f"rule_{rule}" / f"{record['job_id']}.log"
        assert slurm_log.is_file(), f"no SLURM log {slurm_log}"
    assert len(set(job_ids.values())) == 3, f"rules shared a SLURM job: {job_ids}"
    assert int(job_ids["c"]) > max(int(job_ids["a"]), int(job_ids["b"]))
    # c saw both upstream records.
    assert (tmp_path / "c.txt").read_text().splitlines()[-1] == "2"
