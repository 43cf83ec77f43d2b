"""Benchmark: a neuron report with 1 process vs N processes (torchrun), wall time per unit.

Plain script; prints figures measured in this run and never asserts times.

Both runs build the same small report on the default model (EfficientNet-Lite0, ``_blocks.8``,
4 units, 64 steps, 96 px, the bundled sample photos) through the real command line,
``torchrun --standalone --nproc_per_node=P -m captum_fv report ...``, one after the other:

* on the CPU, every process gets ``OMP_NUM_THREADS`` threads (default 1) in both runs, so
  the comparison is 1 core against P cores, not one process's threads against several's;
* with CUDA, each process takes the GPU ``cuda:LOCAL_RANK`` (P defaults to the number of GPUs).

``--max-batch`` (default: 2 units per chunk) matters: units are shared among processes in whole
optimization chunks of ``max_batch // (2 + facets)`` units, so there must be at least P chunks.
Both runs use the same chunks, hence the same work and the same results (checked: the
``units`` of both report.json files must be equal).

Figures: *end to end* is the command's wall time (process start, imports, model loading
included); *report* is the time the command itself prints (building and writing the report:
optimization, the mining pass, attribution, index).

*Machine ceiling*: what P processes can gain here at all. P independent one-process reports of
one chunk each (no communication at all) run at the same time, against one of them alone: P x
its time alone / the slowest one's time together. On small shared-cache VMs this is well
below P, and the distributed speed-up should be compared with it rather than with P.

    python benchmarks/bench_distributed.py [--procs 2] [--units 0-3] [--steps 64] [--size 96]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch


def _env(args: argparse.Namespace) -> Dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _report_args(args: argparse.Namespace, units: str, out: Path) -> List[str]:
    return [
        "-m",
        "captum_fv",
        "report",
        "--layer",
        args.layer,
        "--units",
        units,
        "--steps",
        str(args.steps),
        "--size",
        str(args.size),
        "--facets",
        str(args.facets),
        "--max-batch",
        str(args.max_batch),
        "--out",
        str(out),
        "--quiet",
    ]


def _printed_time(stdout: str) -> float:
    m = re.search(r"^report: .*\((\d+\.\d+) s", stdout, re.M)
    return float(m.group(1)) if m else float("nan")


def run(procs: int, args: argparse.Namespace, out: Path) -> Dict[str, float]:
    """One report through torchrun with ``procs`` processes."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    cmd = [torchrun, "--standalone", f"--nproc_per_node={procs}"] + _report_args(args, args.units, out)
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=_env(args), capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{procs} process(es) failed:\n{proc.stderr[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    return {"wall": wall, "report": _printed_time(proc.stdout), **report["timings_s"]}


def ceiling(procs: int, args: argparse.Namespace, units: str, tmp: Path) -> float:
    """Throughput gain of ``procs`` independent one-process reports at once over one alone."""

    def start(i: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable] + _report_args(args, units, tmp / f"c{i}"),
            env=_env(args),
            stdout=subprocess.PIPE,
            text=True,
        )

    alone = _printed_time(start(-1).communicate()[0])
    together = [start(i) for i in range(procs)]
    slowest = max(_printed_time(p.communicate()[0]) for p in together)
    return procs * alone / slowest


def main(argv: List[str] = None) -> None:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, default=torch.cuda.device_count() if cuda else 2)
    p.add_argument("--units", default="0-3")
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--layer", default="_blocks.8")
    p.add_argument("--facets", type=int, default=4)
    p.add_argument("--max-batch", type=int, default=None, help="default: 2 units per chunk")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every process")
    args = p.parse_args(argv)
    if args.max_batch is None:
        args.max_batch = 2 * (2 + args.facets)
    from captum_fv.cli import parse_units

    n_units = len(parse_units(args.units))
    chunks = -(-n_units // max(1, args.max_batch // (2 + args.facets)))
    where = (
        f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
        if cuda
        else f"CPU, {os.cpu_count()} cores, {args.threads} thread(s) per process"
    )
    print(
        f"report: {n_units} units of {args.layer}, {args.steps} steps, {args.size} px, facets "
        f"{args.facets}, {chunks} optimization chunks; {where}"
    )
    if chunks < args.procs:
        print(f"note: only {chunks} chunks for {args.procs} processes; some will have nothing to optimize")
    per_chunk = max(1, args.max_batch // (2 + args.facets))
    chunk_units = ",".join(str(u) for u in parse_units(args.units)[:per_chunk])
    with tempfile.TemporaryDirectory() as tmp:
        res = {n: run(n, args, Path(tmp) / f"p{n}") for n in (1, args.procs)}
        same = (
            json.loads((Path(tmp) / "p1" / "report.json").read_text())["units"]
            == json.loads((Path(tmp) / f"p{args.procs}" / "report.json").read_text())["units"]
        )
        gain = None if cuda else ceiling(args.procs, args, chunk_units, Path(tmp))
    one, many = res[1], res[args.procs]
    print(f"{'':28s}{'1 process':>12s}{f'{args.procs} processes':>14s}{'speed-up':>10s}")
    for key, label in (("wall", "end to end, s per unit"), ("report", "report, s per unit")):
        a, b = one[key] / n_units, many[key] / n_units
        print(f"{label:28s}{a:12.2f}{b:14.2f}{a / b:9.2f}x")
    for key in ("optimization", "mining", "attribution", "writing"):  # slowest rank, whole report
        print(f"  {key + ', s':26s}{one[key]:12.2f}{many[key]:14.2f}{one[key] / max(many[key], 1e-9):9.2f}x")
    print(f"identical units in report.json: {same}")
    if gain is not None:
        print(
            f"machine ceiling: {args.procs} independent 1-process reports of one chunk (units "
            f"{chunk_units}) at once: {gain:.2f}x the throughput of one alone"
        )


if __name__ == "__main__":
    main()
