"""summarize.py RESULTS.txt - the summary bench/run.sh prints from bench_infer / bench_torch.py lines.

RESULT <impl> <threads> <batch> <chunks/s> ... lines are grouped by (impl, threads, batch); each
group gets its best and median over rounds. Ratios compare clmrd with the best PyTorch variant *of
the same precision* measured in the same run: fp32 against torch-eager*/torch-mkldnn* (every
allocator), bf16 against torch-mkldnn-bf16*/torch-eager-bf16*. "best" ratios divide best by best,
"median" ones median by median. FIRST lines (bench_infer) give the first-call cost.
Run with /usr/bin/python3.
"""
import statistics
import sys
from collections import defaultdict

GF, PEAK = 3.4572, 428.0


def is_bf16(impl):
    return impl.endswith("-bf16") or "-bf16-" in impl


def main(path):
    rates = defaultdict(list)
    first = defaultdict(list)
    for line in open(path):
        f = line.split()
        if f and f[0] == "RESULT":
            rates[(f[1], int(f[2]), int(f[3]))].append(float(f[4]))
        elif f and f[0] == "FIRST":
            first[(f[1], int(f[2]), int(f[3]))].append([float(v) for v in f[4:8]])
    print(f"{'impl':26s} {'thr':>3s} {'batch':>5s} {'best c/s':>9s} {'median':>8s} {'GFLOP/s':>8s} "
          f"{'of fp32 peak':>12s}")
    for (impl, th, b), v in sorted(rates.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        best = max(v)
        print(f"{impl:26s} {th:3d} {b:5d} {best:9.2f} {statistics.median(v):8.2f} {best * GF:8.1f} "
              f"{best * GF / PEAK:12.1%}")
    print("ratios, clmrd / best PyTorch variant of the same precision (best/best ; median/median):")
    for th, b in sorted({(k[1], k[2]) for k in rates}):
        for prec in ("fp32", "bf16"):
            torch = [k for k in rates if k[1:] == (th, b) and k[0].startswith("torch-")
                     and is_bf16(k[0]) == (prec == "bf16")]
            ours = [k for k in rates if k[1:] == (th, b) and k[0].startswith("clmr")
                    and is_bf16(k[0]) == (prec == "bf16")]
            if not torch or not ours:
                continue
            tb = max(torch, key=lambda k: max(rates[k]))
            tm = max(torch, key=lambda k: statistics.median(rates[k]))
            for k in sorted(ours):
                v = rates[k]
                print(f"  {prec} threads {th} batch {b:2d}: {k[0]:14s} {max(v) / max(rates[tb]):5.2f}x "
                      f"(vs {tb[0]}) ; {statistics.median(v) / statistics.median(rates[tm]):5.2f}x "
                      f"(vs {tm[0]})")
    if first:
        print("first-call cost (median over rounds, seconds): open, first run after open, steady run, "
              "clmr_infer_warm on a fresh context")
        for (impl, th, b), v in sorted(first.items()):
            med = [statistics.median(c) for c in zip(*v)]
            print(f"  {impl:14s} threads {th} batch {b:2d}: open {med[0]:.3f}  first {med[1]:.3f}  "
                  f"steady {med[2]:.3f} (first/steady {med[1] / med[2]:.2f}x)  warm {med[3]:.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
