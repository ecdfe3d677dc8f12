"""OpenBLAS reference for the CPU matrix product: times numpy's f32 n×n·n×n (numpy wheels link
OpenBLAS) the way `sinter bench matmul` times the CPU backend: best of three rounds of ~0.3 s."""

import argparse
import time

import numpy as np


def gflops(n: int, round_s: float) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=c)  # warm-up: threads started, pages touched
    best = float("inf")
    for _ in range(3):
        reps, start = 0, time.perf_counter()
        while True:
            np.matmul(a, b, out=c)
            reps += 1
            elapsed = time.perf_counter() - start
            if elapsed >= round_s:
                break
        best = min(best, elapsed / reps)
    return 2.0 * n**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--round-ms", type=float, default=300)
    args = parser.parse_args()
    blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
    print(f"numpy {np.__version__}, {blas['name']} {blas['version']}")
    for n in (int(s) for s in args.sizes.split(",")):
        print(f"numpy matmul f32 {n}: {gflops(n, args.round_ms / 1000):.1f} GFLOP/s")


if __name__ == "__main__":
    main()
