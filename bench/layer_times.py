"""layer_times.py VERBOSE_LOG - per-primitive mean time from an ONEDNN_VERBOSE=1 run of bench_infer.

Groups `onednn_verbose,exec,...` lines by (primitive, implementation, problem shape), prints the
mean ms per call in first-seen order, the implementation oneDNN picked and, for convolutions, the
GFLOP/s (2 * MB * OC * IC * KW * OW / time). Run with /usr/bin/python3.
"""
import re
import sys
from collections import OrderedDict

groups = OrderedDict()
for line in open(sys.argv[1]):
    if not line.startswith(("onednn_verbose,exec", "dnnl_verbose,exec")):
        continue
    f = line.rstrip().split(",")
    prim, impl, shape, ms = f[3], f[4], f[-2], float(f[-1])
    key = (prim, impl, shape)
    groups.setdefault(key, []).append(ms)
total = 0.0
rows = []
for (prim, impl, shape), t in groups.items():
    if len(t) < 3:  # weight reorders and warm-up only
        continue
    mean = sum(t[1:]) / (len(t) - 1)
    total += mean
    gf = ""
    m = re.match(r"mb(\d+)_ic(\d+)oc(\d+)_iw(\d+)ow(\d+)kw(\d+)", shape)
    if prim == "convolution" and m:
        mb, ic, oc, iw, ow, kw = map(int, m.groups())
        gf = f"{2 * mb * oc * ic * kw * ow / (mean * 1e-3) / 1e9:7.1f} GFLOP/s"
    rows.append((prim, impl, shape, mean, gf))
for prim, impl, shape, mean, gf in rows:
    print(f"{prim:12s} {impl:22s} {mean:8.3f} ms {100 * mean / total:5.1f}%  {gf:16s} {shape}")
print(f"total {total:.3f} ms per batch")
