"""A real, single-node SLURM cluster for the SLURM tests (root + Debian only).

``SlurmCluster`` installs Debian's ``slurm-wlm`` and ``munge`` when they are
missing, starts ``munged`` (unless one already answers), writes
``/etc/slurm/slurm.conf`` for one node (this machine, all its CPUs, a ``debug``
partition, no accounting database), starts ``slurmctld`` and ``slurmd`` in the
foreground as child processes, and waits until ``sinfo`` shows the node idle.
``stop()`` ends exactly the processes it started (by their pid) and puts back
whatever ``slurm.conf`` was there before.

The configuration is the minimum the Snakemake SLURM executor needs:

* ``AccountingStorageType=accounting_storage/none``: no slurmdbd, so ``sacct``
  does not answer; the profile sets ``slurm-status-command: squeue``.
* ``MinJobAge=300``: finished jobs stay visible to ``squeue --states=all`` for
  5 minutes, long enough for the executor's status polls (it falls back to
  ``sacct`` when MinJobAge < 3 x the first status-check delay).
* ``ProctrackType=proctrack/linuxproc`` and ``TaskPlugin=task/none``: no cgroups,
  which containers and CI machines often lack.

It refuses (``unavailable_reason`` says why) when not root, when there is no
``apt-get`` to install missing tools, or when a SLURM controller that it did not
start is already running: it never reconfigures somebody's real cluster.

Used by ``tests/test_slurm.py``; also runnable by hand::

    python tests/slurm_cluster.py start   # runs until Ctrl-C, then stops the cluster
    python tests/slurm_cluster.py conf    # prints the slurm.conf it would write

A cluster this helper started and that is still running (its session was killed)
is reused as it is and left running.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

#: First line of the slurm.conf this helper writes (how it recognises its own file).
MARKER = "# written by ct2mr tests/slurm_cluster.py"
CONF = Path("/etc/slurm/slurm.conf")
STATE_DIR = Path("/var/spool/ct2mr-slurm")
PARTITION = "debug"
DEBIAN_PACKAGES = ("slurm-wlm", "munge")
SLURM_TOOLS = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "munged")


def _which(tool: str) -> str | None:
    return shutil.which(tool) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / tool).is_file()), None
    )


def _pids_of(name: str) -> list[int]:
    """Pids whose executable name is exactly ``name`` (reads /proc, no pkill)."""
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                pids.append(int(comm.parent.name))
        except OSError:
            continue
    return pids


def unavailable_reason() -> str | None:
    """Why a cluster cannot be set up here, or None when it can."""
    if sys.platform != "linux":
        return "SLURM test cluster needs Linux"
    if os.geteuid() != 0:
        return "SLURM test cluster needs root (it writes /etc/slurm and starts daemons)"
    missing = [t for t in SLURM_TOOLS if _which(t) is None]
    if missing and shutil.which("apt-get") is None:
        return f"SLURM tools missing ({', '.join(missing)}) and no apt-get to install them"
    if _pids_of("slurmctld") and not (CONF.is_file() and CONF.read_text().startswith(MARKER)):
        return "a slurmctld not started by this test is running; not touching that cluster"
    return None


def ensure_installed(timeout_s: float = 600) -> None:
    """``apt-get install`` slurm-wlm and munge when any of their tools is missing."""
    if all(_which(t) for t in SLURM_TOOLS):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, timeout=timeout_s)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *DEBIAN_PACKAGES],
        env=env, check=True, timeout=timeout_s, stdout=subprocess.DEVNULL,
    )


def _mem_mb() -> int:
    """Node memory for slurm.conf: 90 % of MemTotal (MB), so slurmd never reports less."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.9)
    raise RuntimeError("no MemTotal in /proc/meminfo")


class SlurmCluster:
    """One-node SLURM on this machine; ``start()`` then ``stop()`` (idempotent)."""

    def __init__(self, cpus: int | None = None, min_job_age_s: int = 300) -> None:
        self.node = socket.gethostname().split(".")[0]
        self.cpus = cpus or os.cpu_count() or 1
        self.mem_mb = _mem_mb()
        self.min_job_age_s = min_job_age_s
        self.procs: list[subprocess.Popen] = []
        self._conf_backup: str | None = None
        self._wrote_conf = False

    # -- configuration -------------------------------------------------------------
    def slurm_conf(self) -> str:
        """Text of the slurm.conf for this node."""
        return "\n".join([
            MARKER,
            "ClusterName=ct2mrtest",
            f"SlurmctldHost={self.node}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "MpiDefault=none",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            f"MinJobAge={self.min_job_age_s}",
            "ReturnToService=2",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=sched_interval=2",
            f"StateSaveLocation={STATE_DIR}/ctld",
            f"SlurmdSpoolDir={STATE_DIR}/d",
            f"SlurmctldPidFile={STATE_DIR}/slurmctld.pid",
            f"SlurmdPidFile={STATE_DIR}/slurmd.pid",
            f"SlurmctldLogFile={STATE_DIR}/slurmctld.log",
            f"SlurmdLogFile={STATE_DIR}/slurmd.log",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            "InactiveLimit=0",
            "KillWait=5",
            "Waittime=0",
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} "
            f"RealMemory={self.mem_mb} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "",
        ])

    # -- lifecycle -----------------------------------------------------------------
    def start(self, timeout_s: float = 60) -> None:
        """Install if needed, start munged/slurmctld/slurmd, wait for an idle node."""
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        ensure_installed()
        if _pids_of("slurmctld") and _pids_of("slurmd"):
            # ours (unavailable_reason checked the marker), left by an earlier
            # session that was killed: use it as it is, and leave it running
            self._wait_idle(timeout_s)
            return
        try:
            self._start_munge()
            self._write_conf()
            for d in ("ctld", "d"):
                (STATE_DIR / d).mkdir(parents=True, exist_ok=True)
            # -D: foreground (we own the pid); -c: forget jobs of earlier sessions
            self._spawn([_which("slurmctld"), "-D", "-c", "-i"], "slurmctld")
            time.sleep(1)
            self._spawn([_which("slurmd"), "-D", "-N", self.node], "slurmd")
            self._wait_idle(timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the daemons this object started (by pid) and restore slurm.conf."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self.procs.clear()
        if self._wrote_conf:
            if self._conf_backup is None:
                CONF.unlink(missing_ok=True)
            else:
                CONF.write_text(self._conf_backup)
            self._wrote_conf = False

    def __enter__(self) -> SlurmCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self) -> str:
        """Tail of the daemons' log files (for test failure messages)."""
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            p = STATE_DIR / name
            if p.is_file():
                out.append(f"--- {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(out)

    # -- helpers -------------------------------------------------------------------
    def _spawn(self, argv: list[str | None], name: str, **kw: object) -> None:
        proc = subprocess.Popen(
            [a for a in argv if a is not None],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, **kw,  # type: ignore[arg-type]
        )
        self.procs.append(proc)
        time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited at once (status {proc.returncode})\n{self.logs()}")

    @staticmethod
    def _munge_works() -> bool:
        try:
            cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
            if cred.returncode != 0:
                return False
            back = subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, timeout=10)
            return back.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def _start_munge(self) -> None:
        if self._munge_works():
            return  # a munged is already running (system service): reuse, never stop it
        key = Path("/etc/munge/munge.key")
        key.parent.mkdir(parents=True, exist_ok=True)
        if not key.is_file():
            subprocess.run([_which("mungekey") or "mungekey", "--create", "--keyfile", str(key)],
                           check=True, timeout=30)
        for d in (key.parent, Path("/run/munge"), Path("/var/lib/munge"), Path("/var/log/munge")):
            d.mkdir(parents=True, exist_ok=True)
            shutil.chown(d, "munge", "munge")
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
        Path("/run/munge").chmod(0o755)
        self._spawn([_which("munged"), "--foreground"], "munged", user="munge", group="munge")
        for _ in range(50):
            if self._munge_works():
                return
            time.sleep(0.2)
        raise RuntimeError("munged started but `munge -n | unmunge` fails")

    def _write_conf(self) -> None:
        CONF.parent.mkdir(parents=True, exist_ok=True)
        if CONF.is_file() and not CONF.read_text().startswith(MARKER):
            self._conf_backup = CONF.read_text()
        self._wrote_conf = True
        CONF.write_text(self.slurm_conf())

    def _wait_idle(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[0]} died (status {proc.returncode})\n{self.logs()}")
            res = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
            state = res.stdout.strip()
            if res.returncode == 0 and state.rstrip("*") in {"idle", "mixed", "allocated"}:
                return
            if state.startswith(("down", "drain")):
                subprocess.run(["scontrol", "update", f"NodeName={self.node}", "State=RESUME"],
                               capture_output=True)
            time.sleep(1)
        raise RuntimeError(f"node not idle after {timeout_s:.0f} s (sinfo: {state!r})\n{self.logs()}")


def main(argv: list[str]) -> int:  # pragma: no cover - manual use
    """``start`` (foreground until Ctrl-C) or ``conf`` (print the slurm.conf)."""
    cmd = argv[1] if len(argv) > 1 else "start"
    cluster = SlurmCluster()
    if cmd == "conf":
        print(cluster.slurm_conf())
        return 0
    reason = unavailable_reason()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    with cluster:
        print(f"SLURM up: node {cluster.node}, partition {PARTITION}. Ctrl-C stops it.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv))
