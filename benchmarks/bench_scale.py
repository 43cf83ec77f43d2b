"""Benchmark: mining memory against dataset size, and DataLoader workers for decoding.

Plain script; prints figures measured in this run and never asserts times or sizes.

1. Peak memory: every channel of ``_blocks.8`` of EfficientNet-Lite0 mined over an image folder of
   small synthetic JPEGs (flat folder, 64 px), once with 2,000 and once with 20,000 files, each in
   a fresh child process whose peak RSS (``ru_maxrss``) is read at the end, and the peak PSS of it
   and its loader workers together (sampled); the same in a child that only loads the model and
   builds the dataset. Goal: peak(20,000) - peak(2,000) under 300 MB.
   Mining uses ``collect``'s default loader workers unless ``--memory-workers`` says otherwise.
2. Workers: folder mining with ``num_workers`` 0, 1 and 2 at the report's size (128 px, from
   400 x 300 JPEGs, about ImageNet's photo size), the fastest of interleaved runs, as ratios to
   ``num_workers=0``, with the CPU time spent (workers included: more processes take a larger
   share of a busy machine, so a wall-clock gain there is only real if the CPU time stays put);
   and whether the examples found are identical.
3. Decoding: 4032 x 3024 JPEGs (a phone camera's) read as 128 px items, decoded whole vs at the
   reduced scale ``image_folder`` uses (``imagefile.DRAFT_GAP``), time and pixel difference.

The folders are made once under ``--folder`` (default: a temporary folder, removed at the end).

    python benchmarks/bench_scale.py [--sizes 2000 20000] [--folder /tmp/fv_scale] [--repeats 2]
        [--skip memory workers decode]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
from PIL import Image

LAYER, BATCH, K = "_blocks.8", 64, 9


def make_jpegs(folder: Path, n: int, size: tuple, seed: int) -> Path:
    """``n`` smooth random-colour JPEGs of ``size`` (w, h) in ``folder`` (kept if already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    have = {p.name for p in folder.glob("*.jpg")}
    rng = np.random.default_rng(seed)
    w, h = size
    for i in range(n):
        name = f"img{i:06d}.jpg"
        coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)  # drawn even when kept: same pictures
        if name in have:
            continue
        # a few coarse blobs upsampled plus noise: JPEG-typical content, not flat colour
        img = Image.fromarray(coarse).resize((w, h), Image.BICUBIC)
        noise = rng.integers(-20, 21, (h, w, 3))
        arr = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / name, quality=90)
    return folder


def subset(folder: Path, n: int, into: Path) -> Path:
    """A folder holding the first ``n`` files of ``folder`` as hard links (symlinks where linking fails)."""
    into.mkdir(parents=True, exist_ok=True)
    for src in sorted(folder.glob("*.jpg"))[:n]:
        dst = into / src.name
        if not dst.exists():
            try:
                os.link(src, dst)
            except OSError:
                dst.symlink_to(src)
    return into


def peak_mb() -> float:
    """This process's peak RSS in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def pss_mb(pid: int) -> float:
    """A process's proportional set size (shared pages split among their users), MB; 0 if gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:")) / 1024
    except (OSError, StopIteration, ValueError):
        return 0.0


def children_of(pid: int) -> List[int]:
    kids: List[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


class PssWatch:
    """Samples, in a thread, the PSS of this process and of its children (loader workers): the
    peak of their sum, the memory they really take together (RSS counts a forked worker's
    pages shared with its parent twice)."""

    def __init__(self, every: float = 0.2) -> None:
        self.every, self.total, self.workers = every, 0.0, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            kids = sum(pss_mb(k) for k in children_of(me))
            self.total, self.workers = max(self.total, pss_mb(me) + kids), max(self.workers, kids)
            self._stop.wait(self.every)

    def __enter__(self) -> "PssWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def child(args: argparse.Namespace) -> None:
    """One measurement in this fresh process; prints one JSON line."""
    import torch

    import captum_fv as fv

    torch.set_num_threads(args.threads)
    fv.tune_cpu_allocator()  # as the command line does
    model = fv.models.efficientnet_lite0()
    t = time.perf_counter()
    ds = fv.data.image_folder(args.child_folder, size=args.image_size)
    out = {"n": len(ds), "dataset_s": time.perf_counter() - t}
    if args.child == "mine":
        t = time.perf_counter()
        with PssWatch() as watch:
            ex = fv.DatasetExamples(model, LAYER).collect(
                ds, k=K, batch_size=BATCH, progress=False, num_workers=None if args.workers < 0 else args.workers
            )
        out.update(mine_s=time.perf_counter() - t, state_bytes=ex.state_bytes, top0=ex.top(0).indices.tolist())
        out.update(pss_total_mb=watch.total, pss_workers_mb=watch.workers)
    out["peak_mb"] = peak_mb()
    print(json.dumps(out))


def run_child(folder: Path, what: str, image_size: int, threads: int, workers: int = -1) -> Dict:
    """``workers``: loader workers for mining, -1 for collect's default."""
    cmd = [sys.executable, __file__, "--child", what, "--child-folder", str(folder)]
    cmd += ["--image-size", str(image_size), "--threads", str(threads), "--workers", str(workers)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {what} on {folder} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_memory(root: Path, sizes: Sequence[int], threads: int, workers: Sequence[int]) -> None:
    big = make_jpegs(root / "jpeg64", max(sizes), (64, 64), seed=0)
    print(f"memory: every channel of {LAYER}, flat folder of 64 px JPEGs, size=64, batch {BATCH}, k={K}")
    for w in workers:
        label = "collect's default" if w < 0 else str(w)
        print(f"  num_workers {label}; PSS: sampled peak of this process and its workers together")
        rows: List[Dict] = []
        for n in sizes:
            folder = big if n == max(sizes) else subset(big, n, root / f"jpeg64_{n}")
            built = run_child(folder, "dataset", 64, threads)
            mined = run_child(folder, "mine", 64, threads, w)
            rows.append(mined)
            print(
                f"  {n:6d} images   model+dataset peak {built['peak_mb']:7.1f} MB"
                f"   mining peak {mined['peak_mb']:7.1f} MB   PSS with workers {mined['pss_total_mb']:7.1f} MB"
                f" (workers {mined['pss_workers_mb']:5.1f})"
                f"   mining state {mined['state_bytes'] / 1e6:.2f} MB"
                f"   mining {mined['mine_s']:6.1f} s ({n / mined['mine_s']:.0f} img/s)"
            )
        if len(rows) >= 2:
            lo, hi = rows[0], rows[-1]
            print(
                f"  peak({hi['n']}) - peak({lo['n']}) = {hi['peak_mb'] - lo['peak_mb']:.1f} MB   (goal: under 300 MB)"
                f"   PSS with workers: {hi['pss_total_mb'] - lo['pss_total_mb']:.1f} MB"
            )


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (loader workers), user + system."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def bench_workers(root: Path, n: int, threads: int, repeats: int) -> None:
    import torch

    import captum_fv as fv

    torch.set_num_threads(threads)
    fv.tune_cpu_allocator()
    folder = make_jpegs(root / "jpeg400", n, (400, 300), seed=1)
    model = fv.models.efficientnet_lite0()
    ds = fv.data.image_folder(folder, size=128)
    miner = fv.DatasetExamples(model, LAYER)
    workers = (0, 1, 2)
    results: Dict[int, object] = {}

    def mine(w: int):
        results[w] = miner.collect(ds, k=K, batch_size=32, progress=False, num_workers=w)

    for w in workers:  # warm-up
        mine(w)
    times: Dict[int, List[float]] = {w: [] for w in workers}
    cpu: Dict[int, List[float]] = {w: [] for w in workers}
    for _ in range(repeats):
        for w in workers:
            t, c = time.perf_counter(), cpu_seconds()
            mine(w)
            times[w].append(time.perf_counter() - t)
            cpu[w].append(cpu_seconds() - c)
    best = {w: min(ts) for w, ts in times.items()}
    same = all(json.dumps(results[w].to_dict()) == json.dumps(results[0].to_dict()) for w in workers)
    load = os.getloadavg()[0]
    print(f"workers: every channel of {LAYER}, {n} JPEGs 400x300 -> 128 px, batch 32, {threads} threads")
    print(f"  load average at the end {load:.1f} on {os.cpu_count()} cores (other processes compete for them)")
    for w in workers:
        print(
            f"  num_workers={w}   {n / best[w]:6.1f} img/s   time ratio to num_workers=0 {best[w] / best[0]:.2f}"
            f"   CPU s per image {min(cpu[w]) / n * 1e3:6.1f} ms (workers included)"
        )
    print(f"  identical examples for every num_workers: {same}")


def bench_decode(root: Path, repeats: int) -> None:
    import torch

    import captum_fv as fv
    from captum_fv import imagefile

    folder = make_jpegs(root / "jpeg4032", 4, (4032, 3024), seed=2)  # phone-camera photos
    gap = imagefile.DRAFT_GAP
    print("decode: 4032 x 3024 JPEGs read as 128 px items (image_folder, size=128), one process")
    for crops in (0, 4):
        ds = fv.data.image_folder(folder, size=128, crops=crops)
        timed: Dict[str, float] = {}
        items: Dict[str, torch.Tensor] = {}
        for label, value in (("whole bitmap", 10**9), ("reduced (draft)", gap)):
            imagefile.DRAFT_GAP = value  # a gap no photo has: the whole bitmap, as before DRAFT_GAP
            try:
                best = float("inf")
                for _ in range(repeats + 1):
                    t = time.perf_counter()
                    items[label] = torch.stack([ds[i][0] for i in range(len(ds))])
                    best = min(best, time.perf_counter() - t)
                timed[label] = best / len(ds)
            finally:
                imagefile.DRAFT_GAP = gap
        diff = (items["whole bitmap"] - items["reduced (draft)"]).abs()
        whole, reduced = timed["whole bitmap"], timed["reduced (draft)"]
        print(
            f"  crops={crops}: whole bitmap {whole * 1e3:6.1f} ms/item   reduced {reduced * 1e3:6.1f} ms/item"
            f"   time ratio {reduced / whole:.2f}"
            f"   pixel difference max {float(diff.max()) * 255:.1f}/255, mean {float(diff.mean()) * 255:.2f}/255"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--worker-images", type=int, default=512)
    parser.add_argument("--folder", type=Path, default=None, help="where to keep the JPEGs (default: a temp dir)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip", choices=["memory", "workers", "decode"], nargs="+", default=[])
    parser.add_argument(
        "--memory-workers", type=int, nargs="+", default=[-1], help="num_workers of the memory runs; -1: the default"
    )
    # child-process options
    parser.add_argument("--child", choices=["dataset", "mine"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-folder", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--image-size", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=-1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    root = args.folder or Path(tempfile.mkdtemp(prefix="fv_scale_"))
    try:
        import torch

        print(f"torch {torch.__version__}, {args.threads} threads, CPU, {os.cpu_count()} cores")
        if "decode" not in args.skip:
            bench_decode(root, args.repeats)
        if "memory" not in args.skip:
            bench_memory(root, sorted(args.sizes), args.threads, args.memory_workers)
        if "workers" not in args.skip:
            bench_workers(root, args.worker_images, args.threads, args.repeats)
    finally:
        if args.folder is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
