#!/usr/bin/env python3
"""Turn one scripts/bench-mount.sh run into the BENCHMARKS.md table: per bucket and pass, MB/s,
the ratio to the direct mount, origin GETs per block, node, gateway and mount CPU seconds per GB; then
each target of the mount issue as a measured ratio.

usage: bench_mount_report.py RESULTS_TSV --files N --size-mib M --readers R --tick HZ
RESULTS_TSV rows: scenario, reader, pass, seconds, origin GETs, node, gateway and mount ticks.
"""
import argparse
from collections import defaultdict

p = argparse.ArgumentParser()
p.add_argument("results")
p.add_argument("--files", type=int, required=True)
p.add_argument("--size-mib", type=int, required=True)
p.add_argument("--readers", type=int, required=True)
p.add_argument("--tick", type=int, required=True)
a = p.parse_args()

total_bytes = a.files * a.size_mib * 2**20
gb = total_bytes / 1e9
blocks = a.files * a.size_mib // 4
rows = []
with open(a.results) as f:
    for line in f:
        scenario, reader, name, secs, gets, node, gw, mnt = line.rstrip("\n").split("\t")
        rows.append((scenario, reader, name, float(secs), int(gets), int(node) / a.tick, int(gw) / a.tick,
                     int(mnt) / a.tick))

rate = {}  # (scenario, reader, pass) -> MB/s
direct = defaultdict(list)
for scenario, reader, name, secs, *_ in rows:
    rate[scenario, reader, name] = total_bytes / secs / 1e6
    if reader == "direct":
        direct[scenario].append(rate[scenario, reader, name])
direct_mean = {s: sum(v) / len(v) for s, v in direct.items()}

labels = {"loopback": "loopback", "delay": "50 ms", "delay-cap": "50 ms + 100 MB/s"}
print(f"JuiceFS CE mount (--read-only --cache-size 0), {a.files} files x {a.size_mib} MiB "
      f"({blocks} blocks of 4 MiB), {a.readers} concurrent readers (cat), page cache dropped before each pass.\n")
print("| bucket | reader | pass | MB/s | x direct | origin GETs / block | node CPU s/GB | gateway CPU s/GB "
      "| mount CPU s/GB |")
print("|---|---|---|---:|---:|---:|---:|---:|---:|")
for scenario, reader, name, secs, gets, node, gw, mnt in rows:
    r = rate[scenario, reader, name]
    mirror = reader != "direct"
    print(f"| {labels.get(scenario, scenario)} | {reader} | {name} | {r:,.0f} | {r / direct_mean[scenario]:.2f} "
          f"| {gets / blocks:.2f} | " + (f"{node / gb:.2f} | {gw / gb:.2f} |" if mirror else "- | - |")
          + f" {mnt / gb:.2f} |")


def target(label, value, goal, fmt="{:.2f} x", at_most=False):
    if value is None:
        print(f"| {label} | n/a | {goal} |")
        return
    ok = value <= goal if at_most else value >= goal
    print(f"| {label} | {fmt.format(value)} | {'<=' if at_most else '>='} {fmt.format(goal)} {'ok' if ok else 'MISSED'} |")


def get(scenario, name):
    return rate.get((scenario, "mirrorcache", name))


def row(scenario, name):
    return next((r for r in rows if r[0] == scenario and r[1] == "mirrorcache" and r[2] == name), None)


print("\n| target | measured | goal |")
print("|---|---:|---|")
if "loopback" in direct_mean and get("loopback", "warm"):
    target("warm through the gateway / direct, bucket on loopback", get("loopback", "warm") / direct_mean["loopback"], 1.5)
if "delay-cap" in direct_mean and get("delay-cap", "cold"):
    target("cold / direct, bucket behind 50 ms + 100 MB/s", get("delay-cap", "cold") / direct_mean["delay-cap"], 0.95)
    target("warm / direct, bucket behind 50 ms + 100 MB/s", get("delay-cap", "warm") / direct_mean["delay-cap"], 5.0)
for scenario in ("loopback", "delay", "delay-cap"):
    cold, warm = row(scenario, "cold"), row(scenario, "warm")
    if cold:
        target(f"origin GETs per block, cold pass ({labels[scenario]})", cold[4] / blocks, 1.0, "{:.2f}", at_most=True)
    if warm:
        target(f"origin GETs, first warm pass ({labels[scenario]})", warm[4], 0, "{:.0f}", at_most=True)
for scenario in ("loopback", "delay-cap"):
    warm = row(scenario, "warm")
    if warm:
        target(f"node + gateway CPU s/GB, warm pass ({labels[scenario]})", (warm[5] + warm[6]) / gb, 1.0, "{:.2f}",
               at_most=True)
