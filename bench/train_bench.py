#!/usr/bin/python3
"""train_bench.py - the training benchmark driver: clmrd's oneDNN pretraining step (bench_train)
against PyTorch doing the same step (bench_train_torch.py), same machine, same run, then where the
time of one oneDNN step goes, per layer.

Usage: /usr/bin/python3 bench/train_bench.py [--build build] [--pairs 16,48] [--steps 2]
           [--threads 2] [--no-torch] [--json OUT]

For each batch size (pairs; chunks = 2 x pairs) it runs bench_train then bench_train_torch.py, each
in its own process (peak RSS is per configuration), and prints chunks/s, the ratio, ms per step and
peak RSS. Then it runs bench_train once more at the largest batch with ONEDNN_VERBOSE=1 and sums
the oneDNN execution lines of the last step per layer and kind: forward (conv, BN+ReLU, max-pool),
backward data (pool, BN+ReLU, conv data), backward weights (conv weights + bias), weight reorders.
The rest of a step (projector, NT-Xent, Adam over 2.7 M parameters, running statistics) is the step
time minus those sums. Augmentation cost per view (one thread) comes from bench_train.

Only same-run ratios mean anything on the shared machine; per-layer times are one step (noisy).

Side by side (issue 14): --compare VARIANTS --rounds R runs each variant (IMPL:PRECISION:PAIRS,
IMPL clmrd or torch, PRECISION fp32 or bf16; torch bf16 = torch.autocast) R times in alternating
rounds (the order rotates each round), every run in its own process, PyTorch with a tuned
allocator (--malloc glibc-tuned: GLIBC_TUNABLES=glibc.malloc.mmap_max=0:
glibc.malloc.trim_threshold=68719476736, or jemalloc: LD_PRELOAD of Debian's libjemalloc2), and
prints per variant best / median chunks/s, ms per step and peak RSS, then each clmrd variant's
ratio to the best PyTorch variant (any precision) and to PyTorch of its own precision, from the
same run, and the load average before and after. Example (the issue's target, 48 pairs):
  nice -n 5 /usr/bin/python3 bench/train_bench.py --compare \
      clmrd:bf16:48,clmrd:fp32:48,torch:bf16:48,torch:fp32:16 --rounds 2 --steps 2
PyTorch's memory grows ~120-150 MB (fp32) / ~60 MB (bf16) per chunk here, so on a machine with a 5 GB
budget its fp32 step is measured at fewer pairs (its chunks/s hardly depends on the batch).
"""
import argparse
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OFFICIAL = [1, 128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512]


def layers():
    """(in_ch, out_ch, in_len, conv_len) per layer of the official SampleCNN."""
    out, n = [], 59049
    for i in range(11):
        conv_len = n // 3 if i == 0 else n
        out.append((OFFICIAL[i], OFFICIAL[i + 1], n, conv_len))
        n = conv_len // 3 if 0 < i < 10 else conv_len
    return out


def conv_layer(desc):
    m = re.search(r"ic(\d+)oc(\d+)_iw(\d+)", desc)
    ic, oc, iw = map(int, m.groups())
    for i, (a, b, n, _) in enumerate(layers()):
        if (a, b, n) == (ic, oc, iw):
            return i
    raise ValueError(desc)


def breakdown(lines, steps_run):
    """Per-layer sums of the last step's oneDNN exec lines (see the module docstring)."""
    ex = [l.split(",") for l in lines if l.startswith(("onednn_verbose,exec", "dnnl_verbose,exec"))]
    per_step = len(ex) // steps_run
    ex = ex[-per_step:]
    cols = ["conv_fwd", "bn_relu_fwd", "pool_fwd", "pool_bwd", "bn_relu_bwd", "conv_bwd_weights",
            "conv_bwd_data", "reorders"]
    tab = [dict.fromkeys(cols, 0.0) for _ in range(11)]
    pending, cur, backward = [], None, False
    for f in ex:
        kind, prop, desc, ms = f[3], f[5], f[-2], float(f[-1])
        if kind == "convolution":
            layer = conv_layer(desc)
            col = {"forward_training": "conv_fwd", "backward_weights": "conv_bwd_weights",
                   "backward_data": "conv_bwd_data"}[prop]
            tab[layer][col] += ms
            backward |= prop != "forward_training"
            if prop != "backward_data":  # fwd: its weight reorder; bwd: its pool/BN backward
                for c, t in pending:
                    tab[layer][c] += t
                pending = []
            cur = layer
        elif kind == "reorder":
            # forward: the reorder of the next conv's weights; backward: the gradient/weight
            # reorders between a layer's backward-weights and backward-data convolutions
            if backward:
                tab[cur]["reorders"] += ms
            else:
                pending.append(("reorders", ms))
        elif prop == "forward_training":  # BN+ReLU / pool after the layer's conv
            tab[cur]["bn_relu_fwd" if kind == "batch_normalization" else "pool_fwd"] += ms
        else:  # pool / BN backward come before their layer's conv backward-weights
            backward = True
            pending.append(("bn_relu_bwd" if kind == "batch_normalization" else "pool_bwd", ms))
    return cols, tab


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return r.stdout


TUNED = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def compare(a, env):
    variants = []
    for v in a.compare.split(","):
        impl, prec, pairs = v.split(":")
        if impl not in ("clmrd", "torch") or prec not in ("fp32", "bf16"):
            sys.exit(f"bad variant {v!r}: IMPL:PRECISION:PAIRS with clmrd|torch and fp32|bf16")
        variants.append((impl, prec, int(pairs)))
    tenv = dict(env)
    if a.malloc == "jemalloc":
        tenv["LD_PRELOAD"] = JEMALLOC
    else:
        tenv["GLIBC_TUNABLES"] = TUNED
    bench = os.path.join(a.build, "bench", "bench_train")
    runs = {v: [] for v in variants}
    load0 = loadavg()
    print(f"side by side, {a.threads} threads, {a.rounds} rounds x {a.steps} timed steps, PyTorch "
          f"malloc {a.malloc}; load average before: {load0}", flush=True)
    for r in range(a.rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for v in order:
            impl, prec, pairs = v
            if impl == "clmrd":
                cmd, e = [bench, str(pairs), str(a.steps), "0", prec], env
            else:
                cmd = ["/usr/bin/python3", os.path.join(HERE, "bench_train_torch.py"), str(pairs),
                       str(a.steps), prec]
                e = tenv
            o = json.loads(run(cmd, e).strip().splitlines()[-1])
            runs[v].append(o)
            print(f"  round {r + 1}: {impl} {prec} {pairs} pairs: {o['chunks_per_s']:.2f} chunks/s "
                  f"({o['ms_per_step']:.0f} ms/step, peak RSS {o['peak_rss_mb']:.0f} MB, "
                  f"loss {o['loss']:.4f}) [load {loadavg()}]", flush=True)
    summary = {}
    print(f"\n| variant | pairs | chunks/s best | median | ms/step (best) | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for v, rs in runs.items():
        cps = sorted(x["chunks_per_s"] for x in rs)
        best, med = cps[-1], cps[len(cps) // 2] if len(cps) % 2 else (cps[len(cps) // 2 - 1] +
                                                                       cps[len(cps) // 2]) / 2
        rss = max(x["peak_rss_mb"] for x in rs)
        summary[v] = (best, med)
        name = f"{'clmrd oneDNN' if v[0] == 'clmrd' else 'PyTorch'} {v[1]}"
        print(f"| {name} | {v[2]} | {best:.2f} | {med:.2f} | {1e3 * 2 * v[2] / best:.0f} | "
              f"{rss:.0f} |")
    torch_best = max(((b, v) for v, (b, _) in summary.items() if v[0] == "torch"), default=None)
    for v, (best, med) in summary.items():
        if v[0] != "clmrd" or not torch_best:
            continue
        tb, tv = torch_best
        line = (f"clmrd {v[1]} {v[2]} pairs: {best / tb:.2f}x PyTorch's best ({tv[1]}, {tv[2]} "
                f"pairs; medians {med / summary[tv][1]:.2f}x)")
        same = [(b, m, tvv) for tvv, (b, m) in summary.items() if tvv[0] == "torch" and
                tvv[1] == v[1]]
        if same:
            b, m, tvv = max(same)
            line += f", {best / b:.2f}x PyTorch {v[1]} (medians {med / m:.2f}x)"
        print(line)
    print(f"load average before {load0}, after {loadavg()}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"runs": [dict(r, variant_key=":".join(map(str, v))) for v, rs in runs.items()
                                for r in rs], "load_before": load0, "load_after": loadavg()},
                      f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--pairs", default="16,48")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--breakdown-pairs", type=int, help="pairs of the verbose run (default: largest)")
    ap.add_argument("--breakdown-only", action="store_true")
    ap.add_argument("--compare", help="side by side: IMPL:PRECISION:PAIRS,... (see above)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--malloc", choices=("glibc-tuned", "jemalloc"), default="glibc-tuned")
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    if a.compare:
        compare(a, env)
        return
    # PyTorch as a deployment runs it: glibc's default malloc re-faults every large tensor (5-10x
    # slower here), so the baseline gets the tuned malloc (docs/inference.md, fair baselines)
    tenv = dict(env, GLIBC_TUNABLES=TUNED)
    bench = os.path.join(a.build, "bench", "bench_train")
    results = []
    for pairs in ([] if a.breakdown_only else map(int, a.pairs.split(","))):
        c = json.loads(run([bench, str(pairs), str(a.steps)], env).strip().splitlines()[-1])
        results.append(c)
        t = None
        if not a.no_torch:
            t = json.loads(run(["/usr/bin/python3", os.path.join(HERE, "bench_train_torch.py"),
                                str(pairs), str(a.steps)], tenv).strip().splitlines()[-1])
            results.append(t)
        ratio = f"{c['chunks_per_s'] / t['chunks_per_s']:.2f}x" if t else "-"
        print(f"{pairs} pairs ({2 * pairs} chunks), {a.threads} threads: clmrd "
              f"{c['chunks_per_s']:.2f} chunks/s ({c['ms_per_step']:.0f} ms/step, peak RSS "
              f"{c['peak_rss_mb']:.0f} MB)" +
              (f" | PyTorch {t['chunks_per_s']:.2f} chunks/s ({t['ms_per_step']:.0f} ms/step, "
               f"peak RSS {t['peak_rss_mb']:.0f} MB) | ratio {ratio}" if t else ""), flush=True)
    if results:
        print(f"augmentation chain: {c['aug_ms_per_view']:.1f} ms per view on one thread "
              f"({c['aug_views_per_s_per_thread']:.1f} views/s per loader thread)")

    pairs = a.breakdown_pairs or max(map(int, a.pairs.split(",")))
    venv = dict(env, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1")
    out = run([bench, str(pairs), "1", "0"], venv).splitlines()
    step = json.loads(out[-1])
    cols, tab = breakdown(out, 2)
    print(f"\nper-layer oneDNN time of one step at {pairs} pairs (ms; step {step['ms_per_step']:.0f} ms"
          " with verbose timing):")
    print("layer " + " ".join(f"{c:>16}" for c in cols))
    tot = dict.fromkeys(cols, 0.0)
    for i, row in enumerate(tab):
        print(f"{i:5d} " + " ".join(f"{row[c]:16.1f}" for c in cols))
        for c in cols:
            tot[c] += row[c]
    print("total " + " ".join(f"{tot[c]:16.1f}" for c in cols))
    fwd = tot["conv_fwd"] + tot["bn_relu_fwd"] + tot["pool_fwd"]
    bwd_d = tot["pool_bwd"] + tot["bn_relu_bwd"] + tot["conv_bwd_data"]
    bwd_w = tot["conv_bwd_weights"]
    rest = step["ms_per_step"] - fwd - bwd_d - bwd_w - tot["reorders"]
    print(f"forward {fwd:.0f} ms | backward data {bwd_d:.0f} ms | backward weights {bwd_w:.0f} ms"
          f" | weight reorders {tot['reorders']:.0f} ms | outside oneDNN (projector, NT-Xent, "
          f"Adam, running stats) {rest:.0f} ms")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"runs": results, "per_layer_ms": tab, "step_ms_verbose": step["ms_per_step"],
                       "forward_ms": fwd, "backward_data_ms": bwd_d, "backward_weights_ms": bwd_w,
                       "reorders_ms": tot["reorders"], "rest_ms": rest}, f, indent=1)


if __name__ == "__main__":
    main()
