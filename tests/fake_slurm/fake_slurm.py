"""Just enough Slurm on one machine to run, for real, the batch scripts submitit writes.

The scripts next to this file (``sbatch``, ``srun``, ``sacct``, ``scontrol``, ``scancel``) call
it; tests put the folder first on PATH and point ``FAKE_SLURM_STATE`` at a scratch directory.

* ``sbatch script``: reads the ``#SBATCH`` lines, prints ``Submitted batch job <id>`` and starts
  a detached runner that executes the script with bash (array tasks one after the other), with
  the environment a Slurm job sees (SLURM_JOB_ID, SLURM_ARRAY_*, SLURM_NTASKS(_PER_NODE),
  SLURM_JOB_NODELIST=localhost, SLURM_RESTART_COUNT after a requeue, ...).
* ``srun [--output F] [--error F] cmd``: starts SLURM_NTASKS copies of ``cmd`` with
  SLURM_PROCID / SLURM_LOCALID / SLURM_NODEID set, expands %A %a %j %t in the log paths,
  forwards SIGTERM/SIGINT/SIGUSR1/SIGUSR2 to the tasks, records their pids in the state
  directory (``<job>.tasks.json``) and exits with the first non-zero task status.
* ``sacct -j ID``: the states the runner recorded (RUNNING, COMPLETED, FAILED, PENDING).
* ``scontrol requeue ID``: the runner runs the job again once the current run has exited.
* ``scancel [--signal SIG] ID``: signals the job's tasks (SIGTERM by default).

One node only; nothing is scheduled, no resources are enforced.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


def state_dir() -> Path:
    root = os.environ.get("FAKE_SLURM_STATE")
    if not root:
        sys.exit("fake slurm: set FAKE_SLURM_STATE to a scratch directory")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, payload: object) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)


def read_json(path: Path, default: object = None) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def next_job_id(state: Path) -> int:
    """Job ids from a counter (random start: DDP ports derive from the job id)."""
    with open(state / "counter.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        counter = state / "counter"
        value = int(counter.read_text()) if counter.exists() else random.randint(1000, 8000)
        counter.write_text(str(value + 10))
        return value


def parse_sbatch_options(text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"#SBATCH\s+--([\w-]+)(?:[=\s]+(.*))?$", line.strip())
        if match:
            options[match.group(1)] = (match.group(2) or "").strip()
    return options


def expand(pattern: str, env: dict[str, str], task: int | None = None) -> str:
    out = pattern.replace("%A", env.get("SLURM_ARRAY_JOB_ID", env["SLURM_JOB_ID"]))
    out = out.replace("%a", env.get("SLURM_ARRAY_TASK_ID", "0")).replace("%j", env["SLURM_JOB_ID"])
    return out.replace("%t", str(task if task is not None else 0))


# -- sbatch and its runner -------------------------------------------------------------------
def sbatch(args: list[str]) -> None:
    script = Path(args[-1]).resolve()
    options = parse_sbatch_options(script.read_text())
    state = state_dir()
    job_id = next_job_id(state)
    tasks: list[int | None] = [None]
    if "array" in options:
        first, last = options["array"].split("%")[0].split("-")
        tasks = list(range(int(first), int(last) + 1))
    meta = {"job_id": job_id, "script": str(script), "options": options, "tasks": tasks}
    meta["cwd"] = os.getcwd()
    write_json(state / f"{job_id}.job.json", meta)
    for task in tasks:
        write_json(state / f"{key(job_id, task)}.state.json", {"state": "PENDING"})
    with open(state / f"{job_id}.runner.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, __file__, "_run", str(job_id)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    print(f"Submitted batch job {job_id}")


def key(job_id: int | str, task: int | None) -> str:
    return f"{job_id}_{task}" if task is not None else str(job_id)


def job_env(meta: dict, task: int | None, restarts: int) -> dict[str, str]:
    options = meta["options"]
    nodes = int(options.get("nodes", "1"))
    per_node = int(options.get("ntasks-per-node", "1"))
    job_id = meta["job_id"] if task is None else meta["job_id"] + 1 + task
    env = dict(os.environ)
    env.update(
        {
            "SLURM_JOB_ID": str(job_id),
            "SLURM_JOBID": str(job_id),
            "SLURM_JOB_NAME": options.get("job-name", "fake"),
            "SLURM_NTASKS": str(nodes * per_node),
            "SLURM_NPROCS": str(nodes * per_node),
            "SLURM_NTASKS_PER_NODE": str(per_node),
            "SLURM_NNODES": str(nodes),
            "SLURM_JOB_NUM_NODES": str(nodes),
            "SLURM_JOB_NODELIST": "localhost",
            "SLURM_NODELIST": "localhost",
            "SLURM_SUBMIT_DIR": meta["cwd"],
            "SLURM_CLUSTER_NAME": "fake",
        }
    )
    if "cpus-per-task" in options:
        env["SLURM_CPUS_PER_TASK"] = options["cpus-per-task"]
    if "partition" in options:
        env["SLURM_JOB_PARTITION"] = options["partition"]
    if task is not None:
        env["SLURM_ARRAY_JOB_ID"] = str(meta["job_id"])
        env["SLURM_ARRAY_TASK_ID"] = str(task)
    if restarts:
        env["SLURM_RESTART_COUNT"] = str(restarts)
    return env


def run_job(job_id: str) -> None:
    state = state_dir()
    meta = read_json(state / f"{job_id}.job.json")
    for task in meta["tasks"]:
        name = key(job_id, task)
        restarts = 0
        while True:
            write_json(state / f"{name}.state.json", {"state": "RUNNING", "restarts": restarts})
            env = job_env(meta, task, restarts)
            out = expand(meta["options"].get("output", f"slurm-{name}.out"), env)
            err = expand(meta["options"].get("error", out), env)
            with open(out, "ab") as stdout, open(err, "ab") as stderr:
                proc = subprocess.Popen(
                    ["bash", meta["script"]],
                    cwd=meta["cwd"],
                    env=env,
                    stdout=stdout,
                    stderr=stderr,
                )
                code = proc.wait()
            requeue = state / f"{name}.requeue"
            if requeue.exists():
                requeue.unlink()
                restarts += 1
                continue
            final = "COMPLETED" if code == 0 else "FAILED"
            result = {"state": final, "exit_code": code, "restarts": restarts}
            write_json(state / f"{name}.state.json", result)
            break


# -- srun ------------------------------------------------------------------------------------
def srun(args: list[str]) -> None:
    output = error = None
    ntasks = int(os.environ.get("SLURM_NTASKS", "1"))
    i = 0
    while i < len(args) and args[i].startswith("-"):
        flag = args[i]
        if flag in ("--output", "-o"):
            output, i = args[i + 1], i + 2
        elif flag in ("--error", "-e"):
            error, i = args[i + 1], i + 2
        elif flag in ("--ntasks", "-n"):
            ntasks, i = int(args[i + 1]), i + 2
        elif flag.startswith("--ntasks="):
            ntasks, i = int(flag.split("=", 1)[1]), i + 1
        else:  # --unbuffered and other flags without a value
            i += 1
    command = args[i:]
    procs = []
    for task in range(ntasks):
        env = dict(os.environ)
        env.update(
            {
                "SLURM_PROCID": str(task),
                "SLURM_LOCALID": str(task),
                "SLURM_NODEID": "0",
                "SLURM_STEP_ID": "0",
                "SLURM_STEPID": "0",
                "SLURM_STEP_NUM_TASKS": str(ntasks),
            }
        )
        stdout = open(expand(output, env, task), "ab") if output else None
        stderr = open(expand(error, env, task), "ab") if error else stdout
        procs.append(subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr))
    name = os.environ.get("SLURM_ARRAY_JOB_ID")
    name = (
        f"{name}_{os.environ['SLURM_ARRAY_TASK_ID']}" if name else os.environ.get("SLURM_JOB_ID")
    )
    if name:
        write_json(state_dir() / f"{name}.tasks.json", [p.pid for p in procs])

    def forward(signum: int, frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    codes = [p.wait() for p in procs]
    sys.exit(next((c for c in codes if c != 0), 0) % 256)


# -- sacct, scontrol, scancel ----------------------------------------------------------------
def sacct(args: list[str]) -> None:
    state = state_dir()
    wanted = [args[i + 1] for i, a in enumerate(args) if a == "-j" and i + 1 < len(args)]
    print("JobID|State|NodeList")
    for job in wanted:
        meta = read_json(state / f"{job.split('_')[0]}.job.json")
        if meta is None:
            continue
        tasks = meta["tasks"] if "_" not in job else [int(job.split("_")[1])]
        for task in tasks:
            name = key(meta["job_id"], task)
            current = read_json(state / f"{name}.state.json", {"state": "PENDING"})
            print(f"{name}|{current['state']}|localhost")


def scontrol(args: list[str]) -> None:
    if args[:1] != ["requeue"] or len(args) < 2:
        sys.exit(f"fake scontrol: unsupported {args}")
    for job in args[1].split(","):
        (state_dir() / f"{job}.requeue").write_text(str(time.time()))


def scancel(args: list[str]) -> None:
    signum = signal.SIGTERM
    jobs = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--signal") or arg == "-s":
            name, i = (arg.split("=", 1)[1], i + 1) if "=" in arg else (args[i + 1], i + 2)
            signum = getattr(signal, name if name.startswith("SIG") else f"SIG{name}")
            continue
        if not arg.startswith("-"):
            jobs.append(arg)
        i += 1
    for job in jobs:
        for path in state_dir().glob(f"{job}*.tasks.json"):
            for pid in read_json(path, []):
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass


COMMANDS = {
    "sbatch": sbatch,
    "srun": srun,
    "sacct": sacct,
    "scontrol": scontrol,
    "scancel": scancel,
    "_run": lambda args: run_job(args[0]),
}

if __name__ == "__main__":
    COMMANDS[sys.argv[1]](sys.argv[2:])
