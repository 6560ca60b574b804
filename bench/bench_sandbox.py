"""Throughput of the code sandbox: 200 small programs (one stdin/stdout case each) through `run_tests_many`.

Usage: python bench/bench_sandbox.py [--n 200] [--workers N]
Prints programs/s. Each program is a few lines of pure Python; most of the cost is interpreter start-up.
"""
import argparse, os, time

from r1_ref.sandbox import run_tests_many, sandbox_info

PROGRAMS = [
    "n = int(input())\nprint(sum(i * i for i in range(n)))",
    "a, b = map(int, input().split())\nprint(a + b)",
    "s = input().strip()\nprint(s[::-1])",
    "import math\nn = int(input())\nprint(math.factorial(n) % 1000003)",
]


def case(i):
    "The i-th program and its one test case (all programs are correct)."
    k = i % len(PROGRAMS)
    if k == 0: return PROGRAMS[0], [dict(input=f"{i}\n", output=f"{sum(j * j for j in range(i))}\n")]
    if k == 1: return PROGRAMS[1], [dict(input=f"{i} 7\n", output=f"{i + 7}\n")]
    if k == 2: return PROGRAMS[2], [dict(input=f"abc{i}\n", output=f"{str(i)[::-1]}cba\n")]
    import math
    return PROGRAMS[3], [dict(input=f"{i}\n", output=f"{math.factorial(i) % 1000003}\n")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="number of programs")
    ap.add_argument("--workers", type=int, default=None, help="programs at once (default: CPUs)")
    args = ap.parse_args()
    codes, tests = zip(*(case(i) for i in range(args.n)))
    print(f"sandbox: {sandbox_info()}; CPUs: {os.cpu_count()}; workers: {args.workers or os.cpu_count()}")
    t0 = time.perf_counter()
    scores = run_tests_many(list(codes), list(tests), max_workers=args.workers)
    dt = time.perf_counter() - t0
    assert scores == [1.0] * args.n, f"{scores.count(1.0)}/{args.n} passed"
    print(f"{args.n} programs in {dt:.2f}s: {args.n / dt:.1f} programs/s")


if __name__ == "__main__":
    main()
