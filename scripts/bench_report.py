#!/usr/bin/env python3
"""Turn one scripts/bench.sh run into the BENCHMARKS.md table: criterion's estimates, fio's
O_DIRECT read rate, and the load tool's JSON lines, each target as a measured ratio.

usage: bench_report.py CRITERION_DIR FIO_JSON LOAD_JSONL
"""
import json
import os
import sys

crit_dir, fio_json, load_jsonl = sys.argv[1:4]


def crit(path):
    """(seconds per iteration, bytes per iteration or None) of one criterion benchmark."""
    base = os.path.join(crit_dir, *path.split("/"))
    try:
        with open(os.path.join(base, "new", "estimates.json")) as f:
            secs = json.load(f)["mean"]["point_estimate"] / 1e9
        with open(os.path.join(base, "new", "benchmark.json")) as f:
            tp = (json.load(f).get("throughput") or {}).get("Bytes")
        return secs, tp
    except (OSError, KeyError, ValueError):
        return None, None


def rate(path):
    secs, tp = crit(path)
    return tp / secs if secs and tp else None


def fmt_rate(r):
    return "n/a" if r is None else f"{r / 2**20:,.0f} MiB/s"


def fmt_time(path):
    secs, _ = crit(path)
    return "n/a" if secs is None else (f"{secs * 1e9:,.0f} ns" if secs < 1e-5 else f"{secs * 1e3:,.2f} ms")


rows = []


def row(target, measured, ratio, goal, ok):
    verdict = "n/a" if ok is None else ("met" if ok else "NOT met")
    rows.append(f"| {target} | {measured} | {ratio} | {goal} | {verdict} |")


for n in (1, 8):
    cache, bare = rate(f"loopback_4MiB/mirrorcache/inflight={n}"), rate(f"loopback_4MiB/bare_quinn/inflight={n}")
    r = cache / bare if cache and bare else None
    row(f"memory hits, {n} in flight, vs bare quinn", f"{fmt_rate(cache)} vs {fmt_rate(bare)}",
        "n/a" if r is None else f"{r:.2f} x", ">= 0.85 x" if n == 8 else "(context)", None if r is None or n != 8 else r >= 0.85)
cache, default = rate("loopback_4MiB/mirrorcache/inflight=8"), rate("loopback_4MiB/bare_quinn_default/inflight=8")
r = cache / default if cache and default else None
row("stretch: memory hits, 8 in flight, vs bare quinn with quinn's defaults", f"{fmt_rate(cache)} vs {fmt_rate(default)}",
    "n/a" if r is None else f"{r:.2f} x", ">= 1.5 x", None if r is None else r >= 1.5)

def fio_rate(path):
    try:
        with open(path) as f:
            return json.load(f)["jobs"][0]["read"]["bw_bytes"]
    except (OSError, KeyError, ValueError, IndexError):
        return None


disk = rate("store_4MiB/disk_hit")
for path, what, goal in ((fio_json, "", ">= 0.75 x"), (fio_json.replace(".json", "-huge.json"), ", buffers on huge pages", "(context)")):
    fio = fio_rate(path)
    r = disk / fio if disk and fio else None
    row(f"disk hits (store, O_DIRECT) vs fio O_DIRECT 4 MiB sequential{what}", f"{fmt_rate(disk)} vs {fmt_rate(fio)}",
        "n/a" if r is None else f"{r:.2f} x", goal, None if r is None or goal == "(context)" else r >= 0.75)
row("memory hit through the store", fmt_time("store_4MiB/memory_hit"), "", "(context)", None)

owner = crit("ring/owner/members=100")[0]
row("ring owner lookup, 100 members", fmt_time("ring/owner/members=100"), "", "<= 200 ns", None if owner is None else owner <= 200e-9)
dec = crit("codec/get_request_decode")[0]
row("Get request decode", fmt_time("codec/get_request_decode"), "", "<= 1 us", None if dec is None else dec <= 1e-6)
row("page digest, 4 MiB", fmt_time("digest/page_4MiB"), "", "(context)", None)

runs = {}
try:
    with open(load_jsonl) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                j = json.loads(line)
                runs[j.get("label", j.get("mode"))] = j
except OSError:
    pass


def get(label, field):
    return runs.get(label, {}).get(field)


def ratio_row(target, a_label, b_label, field, goal, test, unit="ms", scale=1.0):
    a, b = get(a_label, field), get(b_label, field)
    if a is None or b is None:
        row(target, "n/a", "n/a", goal, None)
        return
    r = a / b if b else float("inf")
    row(target, f"{a * scale:,.2f} {unit} vs {b * scale:,.2f} {unit}", f"{r:.2f} x", goal, test(r))


ratio_row("a miss behind the 50 ms proxy vs a direct read through it (p50)", "cold_delayed", "origin_delayed",
          "p50_ms", "<= 1.05 x", lambda r: r <= 1.05)
ratio_row("direct read through the 50 ms proxy vs warm read, whole 4 MiB blocks (p50)", "origin_delayed",
          "warm_delayed", "p50_ms", ">= 20 x", lambda r: r >= 20)
ratio_row("direct read through the 50 ms proxy vs warm read, 128 KiB ranges (p50)", "origin_delayed_128k",
          "warm_delayed_128k", "p50_ms", ">= 20 x", lambda r: r >= 20)
cpu = get("warm", "node_cpu_s_per_gb")
row("node CPU per GB served from memory", "n/a" if cpu is None else f"{cpu:.2f} core-s/GB", "", "<= 1.0", None if cpu is None else cpu <= 1.0)
for n in (2, 3):
    ratio_row(f"scale: {n} nodes vs 1, each link capped", f"scale_{n}", "scale_1", "mb_per_s",
              ">= 2.7 x" if n == 3 else "(context)", (lambda r: r >= 2.7) if n == 3 else (lambda r: None), unit="MB/s")

print("| target | measured | ratio | goal | verdict |")
print("|---|---|---|---|---|")
print("\n".join(rows))
if runs:
    print()
    print("| run | MB/s | req/s | p50 ms | p99 ms | p999 ms | hit ratio | origin GETs |")
    print("|---|---|---|---|---|---|---|---|")
    for label, j in runs.items():
        def v(k, f="{:,.1f}"):
            x = j.get(k)
            return "n/a" if x is None else f.format(x)
        gets = (j.get("origin_gets_nodes") or 0) + (j.get("origin_gets_client") or 0)
        print(f"| {label} | {v('mb_per_s')} | {v('requests_per_s')} | {v('p50_ms', '{:,.2f}')} | {v('p99_ms', '{:,.2f}')} | "
              f"{v('p999_ms', '{:,.2f}')} | {v('hit_ratio', '{:.3f}')} | {gets:,} |")
