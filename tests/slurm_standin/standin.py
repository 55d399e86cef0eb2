#!/usr/bin/env python3
"""A one-machine stand-in for SLURM's sbatch, srun and sacct, for testing the slurm executor without
a cluster (tests/test_jobs.py puts this folder on PATH).

sbatch keeps a copy of each submitted script in $SLURM_STANDIN_DIR/submitted/<id>.sh, then runs it in
the background with the SLURM_* variables a job sees and its #SBATCH --output/--error files; sacct
reports PENDING/RUNNING/COMPLETED/FAILED from $SLURM_STANDIN_DIR/state/<id>.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

STATE = Path(os.environ["SLURM_STANDIN_DIR"])


def sbatch(arguments: list[str]) -> int:
    script = Path(arguments[-1])
    (STATE / "submitted").mkdir(parents=True, exist_ok=True)
    (STATE / "state").mkdir(parents=True, exist_ok=True)
    counter = STATE / "next_id"
    job_id = int(counter.read_text()) if counter.exists() else 1000
    counter.write_text(str(job_id + 1))
    text = script.read_text()
    (STATE / "submitted" / f"{job_id}.sh").write_text(text)
    flags = dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", text, re.M))
    output = flags.get("output", "slurm-%j.out").replace("%j", str(job_id))
    error = flags.get("error", output).replace("%j", str(job_id))
    env = {**os.environ, "SLURM_JOB_ID": str(job_id), "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1",
           "SLURM_NODEID": "0", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_JOB_NODELIST": "localhost"}
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    state = STATE / "state" / str(job_id)
    state.write_text("RUNNING")
    runner = (f'bash {script} >> "{output}" 2>> "{error}"; '
              f'if [ $? -eq 0 ]; then echo COMPLETED > {state}; else echo FAILED > {state}; fi')
    # detached from sbatch's own output: submitit reads that to its end before it writes the job's pickle
    subprocess.Popen(["bash", "-c", runner], env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"Submitted batch job {job_id}")
    return 0


def srun(arguments: list[str]) -> int:
    files, rest = {}, list(arguments)
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        if flag in ("--output", "--error"):
            files[flag] = rest.pop(0).replace("%j", os.environ["SLURM_JOB_ID"]).replace("%t", "0")
    with open(files.get("--output", os.devnull), "a") as out, open(files.get("--error", os.devnull), "a") as err:
        return subprocess.call(rest, stdout=out, stderr=err)


def sacct(arguments: list[str]) -> int:
    ids = [arguments[i + 1] for i, a in enumerate(arguments) if a == "-j"]
    print("JobID|State|NodeList")
    for job_id in ids:
        state = STATE / "state" / job_id
        print(f"{job_id}|{state.read_text().strip() if state.exists() else 'PENDING'}|localhost")
    return 0


if __name__ == "__main__":
    command = Path(sys.argv[0]).name
    sys.exit({"sbatch": sbatch, "srun": srun, "sacct": sacct}[command](sys.argv[1:]))
