"""What --resume costs: the weights digest of the default model, and reading and fingerprinting
an image folder of 20,000 files (the bad-file check included), each timed here.

    python benchmarks/bench_fingerprint.py [--files 20000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import captum_fv as fv
from captum_fv import fingerprint


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--files", type=int, default=20_000)
    args = p.parse_args()
    model = fv.models.efficientnet_lite0()
    n_params = sum(t.numel() for t in model.state_dict().values())
    print(
        f"weights digest, default model ({n_params / 1e6:.1f}M values): "
        f"{_best(lambda: fingerprint.weights_digest(model)):.3f} s"
    )
    print(f"architecture digest, default model: {_best(lambda: fingerprint.architecture_digest(model)):.3f} s")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "seed.png")
        data = (root / "seed.png").read_bytes()
        for i in range(args.files):  # distinct folders, like a class layout
            d = root / f"class_{i % 20:02d}"
            d.mkdir(exist_ok=True)
            (d / f"img_{i:05d}.png").write_bytes(data)
        (root / "seed.png").unlink()
        t = time.perf_counter()
        ds = fv.data.image_folder(root, size=32)
        made = time.perf_counter() - t
        print(f"image_folder of {len(ds)} files (discovery + bad-file check of every file): {made:.2f} s")
        print(
            f"dataset fingerprint of {len(ds)} files (paths, sizes, mtimes, crops): "
            f"{_best(lambda: fingerprint.dataset_digest(ds)):.3f} s"
        )


if __name__ == "__main__":
    main()
