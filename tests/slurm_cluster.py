"""A real single-node SLURM cluster for the tests: munged, slurmctld and slurmd on this machine.

Needs Debian's ``slurm-wlm`` and ``munge`` installed and root (the daemons run as root and munge); installs
nothing itself (CI's ``.ci/run`` installs them). Writes its configuration, state and logs into one directory,
and stops the daemons it started by their process ids. Clients find it through ``SLURM_CONF``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch", "squeue")
MUNGE_RUN = Path("/run/munge")
SLURMD_CONF_CACHE = Path("/run/slurm/conf")  # where configless slurmd caches the config for job steps


class SlurmUnavailable(RuntimeError):
    """SLURM could not be installed or started here; the message says why."""


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def missing() -> str | None:
    """Why a cluster cannot be started on this machine (None: it can): the programs it needs, and root."""
    absent = [name for name in DAEMONS if not (shutil.which(name) or Path("/usr/sbin", name).exists())]
    if absent:
        return (f"SLURM and munge are not installed ({', '.join(absent)} missing); as root, "
                f"`apt-get install slurm-wlm munge` (what .ci/run does), then run the test again")
    if os.geteuid() != 0:
        return "the test starts munged, slurmctld and slurmd itself, which needs root"
    return None


class SlurmCluster:
    """``with SlurmCluster(directory) as cluster:`` a running cluster; ``cluster.env`` for its clients."""

    def __init__(self, directory: str | Path, cpus: int | None = None, memory_mb: int = 16000):
        self.directory = Path(directory)
        self.cpus = cpus or os.cpu_count()
        self.memory_mb = memory_mb
        self.pids: dict[str, int] = {}
        self.conf = self.directory / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        d = self.directory
        for sub in ("state", "spool", "munge"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(d / "munge", "munge", "munge")
        os.chmod(d / "munge", 0o755)  # munged wants its socket directory searchable by all
        self.conf.write_text("\n".join([
            "ClusterName=geomvol-test",
            "SlurmctldHost=localhost",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={d / 'jobcomp.log'}",
            "MpiDefault=none",
            "ReturnToService=2",
            "SchedulerType=sched/backfill",
            # configless: slurmd fetches this file from slurmctld and caches it in /run/slurm/conf, where clients
            # inside jobs find it (the SLURM plugin's job steps run srun without SLURM_CONF)
            "SlurmctldParameters=enable_configless",
            f"StateSaveLocation={d / 'state'}",
            f"SlurmdSpoolDir={d / 'spool'}",
            f"SlurmctldPidFile={d / 'slurmctld.pid'}",
            f"SlurmdPidFile={d / 'slurmd.pid'}",
            f"SlurmctldLogFile={d / 'slurmctld.log'}",
            f"SlurmdLogFile={d / 'slurmd.log'}",
            "SlurmctldPort=16817",
            "SlurmdPort=16818",
            f"NodeName=localhost CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
        ]) + "\n")

    def _start(self, name: str, command: list[str], pid_file: Path) -> None:
        result = _run(command, env=self.env, timeout=60)
        if result.returncode != 0:
            raise SlurmUnavailable(f"{name} did not start ({' '.join(command)}): {result.stderr.strip()[-2000:]}")
        deadline = time.monotonic() + 20
        while not (pid_file.exists() and pid_file.read_text().strip()):
            if time.monotonic() > deadline:
                raise SlurmUnavailable(f"{name} wrote no pid file {pid_file}; its log: {self._log(name)}")
            time.sleep(0.1)
        self.pids[name] = int(pid_file.read_text().split()[0])

    def _log(self, name: str) -> str:
        log = self.directory / f"{name}.log"
        return log.read_text()[-2000:] if log.exists() else "(none)"

    def __enter__(self) -> "SlurmCluster":
        if missing() is not None:
            raise SlurmUnavailable(missing())
        self._created = [path for path in (MUNGE_RUN, SLURMD_CONF_CACHE) if not path.exists()]
        self._write_config()
        d = self.directory
        try:
            # munged on its default socket: in configless mode slurmd authenticates before it has any config
            MUNGE_RUN.mkdir(parents=True, exist_ok=True)
            shutil.chown(MUNGE_RUN, "munge", "munge")
            self._start("munged", ["runuser", "-u", "munge", "--", "/usr/sbin/munged",
                                   f"--pid-file={d / 'munge' / 'munged.pid'}", f"--log-file={d / 'munge' / 'munged.log'}",
                                   f"--seed-file={d / 'munge' / 'munged.seed'}"],
                        d / "munge" / "munged.pid")
            self._start("slurmctld", ["/usr/sbin/slurmctld", "-f", str(self.conf)], d / "slurmctld.pid")
            self._start("slurmd", ["/usr/sbin/slurmd", "--conf-server", "localhost:16817"], d / "slurmd.pid")
            self._wait_for_node()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_node(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            result = _run(["sinfo", "-h", "-o", "%T"], env=self.env, timeout=30)
            if result.returncode == 0 and result.stdout.strip() in ("idle", "mixed", "allocated"):
                return
            time.sleep(0.5)
        raise SlurmUnavailable(f"the node never became idle (sinfo: {result.stdout.strip()} {result.stderr.strip()}); "
                               f"slurmctld log: {self._log('slurmctld')}; slurmd log: {self._log('slurmd')}")

    def stop(self) -> None:
        """Stop the daemons this cluster started, by their process ids, and remove the run directories it created."""
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        for path in getattr(self, "_created", []):
            shutil.rmtree(path, ignore_errors=True)

    def __exit__(self, *exc) -> None:
        self.stop()


def job_records(jobcomp: Path) -> list[dict]:
    """SLURM's own completed-job records (jobcomp/filetxt, a cluster's ``jobcomp.log``): one dict of KEY=VALUE
    fields per job."""
    if not jobcomp.exists():
        return []
    return [dict(field.split("=", 1) for field in line.split() if "=" in field)
            for line in jobcomp.read_text().splitlines() if line.strip()]
