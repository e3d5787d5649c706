"""A real single-node Slurm cluster for the tests: Debian's slurmctld, slurmd and munge (22.05),
run as root with one node at 127.0.0.1 and two GRES GPUs (stand-in device files; jobs see no
GPU and the workflow's training falls back to the CPU).

Only for ``tests/test_slurm.py``, opt-in (``ZEPHIR_TEST_SLURM=1``; ``.ci/run`` sets it and
installs the packages): it writes ``/etc/slurm/slurm.conf`` and ``gres.conf`` (the plugin's job
step clears every ``SLURM_*`` variable, ``SLURM_CONF`` included, so the config must be where
Slurm looks by default), starts the daemons and stops them by their PIDs.

Facts the settings rest on: without slurmdbd, ``sacct`` knows no job and Snakemake's Slurm
plugin would wait forever, so the tests pass ``--slurm-status-command squeue``, which sees a
finished job only for ``MinJobAge`` seconds: 300 here, above the plugin's longest interval
between status checks (180 s). ``DefMemPerCPU`` and ``CR_Core_Memory`` let jobs share the node.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

CONF_DIR = Path("/etc/slurm")
MARKER = "# written by zephir's tests (tests/slurm_cluster.py)"
PACKAGES = "slurmctld slurmd slurm-client munge"
STATUS_FLAGS = ["--slurm-status-command", "squeue",
                "--slurm-init-seconds-before-status-checks", "2"]


class ClusterUnavailable(RuntimeError):
    """The machine cannot run the test cluster (what is missing is in the message)."""


def missing() -> str | None:
    """Why this machine cannot start the cluster, or None."""
    if os.geteuid() != 0:
        return "the test cluster runs its daemons as root"
    absent = [b for b in ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "scancel")
              if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    if absent:
        return (f"{', '.join(absent)} not installed: apt-get install -y {PACKAGES} "
                "(Debian's Slurm 22.05)")
    for name in ("slurm.conf", "gres.conf"):
        conf = CONF_DIR / name
        if conf.exists() and MARKER not in conf.read_text(errors="replace"):
            return f"{conf} exists and is not the tests' own: refusing to overwrite it"
    for daemon in ("slurmctld", "slurmd"):
        pids = _running(daemon)
        if pids:
            return (f"a {daemon} is already running (PID {pids[0]}): the tests start their "
                    "own; stop it first")
    return None


def _running(name: str) -> list[int]:
    """PIDs of the processes called ``name`` (read from /proc: no procps needed)."""
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                pids.append(int(comm.parent.name))
        except OSError:
            continue  # the process ended meanwhile
    return pids


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise ClusterUnavailable("no MemTotal in /proc/meminfo")


def _run(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=60,
                          **kw)


class LocalCluster:
    """Start with :meth:`start`, stop with :meth:`stop` (also on failure: it kills by PID)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.host = socket.gethostname().split(".")[0]
        self.pids: dict[str, Path] = {}
        self.munged: subprocess.Popen | None = None

    def config(self) -> str:
        f = self.folder
        memory = int(_memory_mb() * 0.8)
        return "\n".join([
            MARKER,
            "ClusterName=zephirtest",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "SchedulerType=sched/backfill",
            "MpiDefault=none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            f"StateSaveLocation={f}/state",
            f"SlurmdSpoolDir={f}/spool",
            f"SlurmctldPidFile={f}/slurmctld.pid",
            f"SlurmdPidFile={f}/slurmd.pid",
            f"SlurmctldLogFile={f}/slurmctld.log",
            f"SlurmdLogFile={f}/slurmd.log",
            "SlurmctldPort=6817",
            "SlurmdPort=6818",
            "MinJobAge=300",
            "ReturnToService=2",
            "KillWait=5",
            "GresTypes=gpu",
            "DefMemPerCPU=1000",
            f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} "
            f"RealMemory={memory} Gres=gpu:2 State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "",
        ])

    def start(self) -> None:
        why = missing()
        if why:
            raise ClusterUnavailable(why)
        for sub in ("state", "spool"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        gpus = [self.folder / f"gpu{i}" for i in range(2)]
        for g in gpus:
            g.touch()
        CONF_DIR.mkdir(parents=True, exist_ok=True)
        (CONF_DIR / "slurm.conf").write_text(self.config())
        (CONF_DIR / "gres.conf").write_text(
            f"{MARKER}\nAutoDetect=off\nNodeName={self.host} Name=gpu "
            f"File={self.folder}/gpu[0-1]\n")
        self._start_munge()
        _run("/usr/sbin/slurmctld", "-i")
        self.pids["slurmctld"] = self.folder / "slurmctld.pid"
        _run("/usr/sbin/slurmd")
        self.pids["slurmd"] = self.folder / "slurmd.pid"
        self._wait_idle()

    def _start_munge(self) -> None:
        if _run("munge", "-n", check=False).returncode == 0:
            return  # a munged is already serving the default socket
        run_dir = Path("/run/munge")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        for d in ("/var/lib/munge", "/var/log/munge"):
            Path(d).mkdir(parents=True, exist_ok=True)
            shutil.chown(d, "munge", "munge")
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            _run("mungekey", "--create")
            shutil.chown(key, "munge", "munge")
        _run("runuser", "-u", "munge", "--", "/usr/sbin/munged")
        self.pids["munged"] = run_dir / "munged.pid"
        for _ in range(50):
            if _run("munge", "-n", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise ClusterUnavailable("munged started but `munge -n` fails")

    def _wait_idle(self, timeout: float = 60) -> None:
        end = time.time() + timeout
        while time.time() < end:
            state = _run("sinfo", "-h", "-o", "%T", check=False).stdout.strip()
            if state == "idle":
                return
            if "drain" in state or "inval" in state:
                log = (self.folder / "slurmctld.log").read_text(errors="replace")[-2000:]
                raise ClusterUnavailable(f"the test node is {state}:\n{log}")
            time.sleep(0.5)
        raise ClusterUnavailable(f"the test node did not become idle in {timeout} s")

    def jobs(self) -> list[dict]:
        """Every job slurmctld still knows (id, state, comment = the Snakemake rule)."""
        out = _run("squeue", "--states=all", "-h", "-o", "%i|%T|%k").stdout
        return [dict(zip(("id", "state", "comment"), line.split("|", 2)))
                for line in out.splitlines() if line.strip()]

    def job_info(self, job_id: str) -> str:
        return _run("scontrol", "show", "job", job_id).stdout

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = self.pids.pop(name, None)
            if pid_file is None or not pid_file.exists():
                continue
            pid = int(pid_file.read_text().split()[0])
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        for name in ("slurm.conf", "gres.conf"):
            conf = CONF_DIR / name
            if conf.exists() and MARKER in conf.read_text(errors="replace"):
                conf.unlink()
