#!/usr/bin/env python3
"""Renders the results directory of bench/compare.sh as one markdown document.

    compare_report.py RESULTS_DIR > latest.md

Inputs (tab-separated, written by compare.sh): meta (key=value), small.tsv, large.tsv,
rss.tsv, fsync.tsv, audit.tsv; any of the .tsv files may be missing (BENCH_ONLY).
"""

import os
import re
import statistics
import sys

MIB = 1 << 20
GIB = 1 << 30


def read_meta(d):
    meta, fails = {}, []
    with open(os.path.join(d, "meta")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            if k == "fail":
                fails.append(v)
            else:
                meta[k] = v
    return meta, fails


def read_tsv(d, name):
    p = os.path.join(d, name)
    if not os.path.exists(p):
        return []
    with open(p) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def us(s):
    """wrk's latency (`812.00us`, `1.23ms`, `2.01s`, `1.50m`) in microseconds."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", s or "")
    if not m:
        return None
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}[m.group(2)]


def fmt_lat(v):
    if v is None:
        return "–"
    if v < 1000:
        return f"{v:.0f} µs"
    if v < 1e6:
        return f"{v / 1e3:.2f} ms"
    return f"{v / 1e6:.2f} s"


def fmt_int(v):
    return f"{v:,.0f}"


def fmt_num(v, digits=1):
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.{digits}f}"
    return f"{v:.{digits + 1}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r, bold_if_worse=None):
    if r is None:
        return "–"
    return f"{r:.2f}×"


class Point:
    """One row of small.tsv or large.tsv, with derived numbers."""

    def __init__(self, row, hz):
        (self.id, self.label, self.twin, conns, size, reqs, dur, rps, p50, p99, srv, org, cli,
         machine, non2xx, sock, peak) = row
        self.conns, self.size, self.reqs = int(conns), int(size), int(reqs)
        self.dur, self.rps = float(dur), float(rps)
        self.p50, self.p99 = us(p50), us(p99)
        self.srv_s, self.org_s, self.cli_s = int(srv) / hz, int(org) / hz, int(cli) / hz
        b0, t0, s0, b1, t1, s1 = map(int, machine.split())
        total = max(1, t1 - t0)
        ours = int(srv) + int(org) + int(cli)
        self.others_pct = max(0.0, 100.0 * (b1 - b0 - ours) / total)
        self.steal_pct = 100.0 * (s1 - s0) / total
        self.errors = []
        if non2xx not in ("", "0"):
            self.errors.append(f"{non2xx} non-2xx")
        if sock and sock != "connect0,read0,write0,timeout0":
            self.errors.append("socket " + sock)
        self.peak_kb = int(peak or 0)
        self.bytes = self.reqs * self.size

    @property
    def us_per_req(self):
        return 1e6 * self.srv_s / self.reqs if self.reqs else None

    @property
    def origin_us_per_req(self):
        return 1e6 * self.org_s / self.reqs if self.reqs and self.org_s else None

    @property
    def client_pct(self):
        return 100.0 * self.cli_s / self.dur if self.dur else None

    @property
    def mbps(self):
        return self.bytes / self.dur / 1e6 if self.dur else None

    @property
    def s_per_gib(self):
        return self.srv_s / (self.bytes / GIB) if self.bytes else None

    @property
    def origin_s_per_gib(self):
        return self.org_s / (self.bytes / GIB) if self.bytes and self.org_s else None


def size_label(n):
    if n >= GIB:
        return f"{n // GIB} GiB"
    if n >= MIB:
        return f"{n // MIB} MiB"
    return f"{n // 1024} KiB"


def main():
    d = sys.argv[1]
    meta, fails = read_meta(d)
    hz = int(meta.get("clk_tck", "100"))
    nproc = int(meta.get("nproc", "1"))
    small = [Point(r, hz) for r in read_tsv(d, "small.tsv")]
    large = [Point(r, hz) for r in read_tsv(d, "large.tsv")]
    rss = read_tsv(d, "rss.tsv")
    fsync = read_tsv(d, "fsync.tsv")
    audit = read_tsv(d, "audit.tsv")
    out = []
    w = out.append

    mode = "quick (BENCH_QUICK=1)" if meta.get("quick") == "1" else "full"
    w(f"# bordergate vs nginx: `bench/compare.sh`, {mode} run")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| date | {meta.get('date')} (took {int(meta.get('elapsed', 0)) // 60} min {int(meta.get('elapsed', 0)) % 60} s) |")
    w(f"| machine | {nproc} CPUs, {meta.get('cpu')}, {meta.get('kernel')} |")
    w(f"| bordergate | {meta.get('commit')} on `{meta.get('branch')}`, {meta.get('version')}, release build |")
    w(f"| tools | {meta.get('nginx')}, {meta.get('wrk')}, curl for the 1 GiB / 4 GiB transfers |")
    w(f"| pinning | {meta.get('pinning')} |")
    w(f"| points | {meta.get('secs')} s each, HTTP/1.1 keep-alive over loopback; parts: {meta.get('only')} |")
    if "nginx_conf" in meta:
        w(f"| nginx config | {meta['nginx_conf']} |")
    if "tls" in meta:
        w(f"| TLS | {meta['tls']} |")
    w(f"| bordergate setup | RS256 tokens (fresh per point), the whole `policies/` pack, quickstart registry, `mode: enforce`; every request allowed (acme-de, DE, analytics) |")
    w(f"| audit log | `{meta.get('audit_dir')}`: {meta.get('audit_fs')}{' (NOT durable: tmpfs)' if meta.get('audit_fs', '').startswith('tmpfs') else ''}; fdatasync per group commit |")
    w(f"| machine load | load average at start {meta.get('load0')}, at end {meta.get('load1')}; steal {meta.get('steal_pct')}% and busy {meta.get('busy_pct')}% over the whole run |")
    if "stale" in meta:
        w(f"| **binary** | **{meta['stale']}** |")
    w("")

    warnings = []
    load0 = float(meta.get("load0", "0").split()[0])
    if load0 > nproc:
        warnings.append(f"the load average was {load0} at start, above the {nproc} CPUs")
    steal = float(meta.get("steal_pct", "0"))
    if steal > 5:
        warnings.append(f"the hypervisor stole {steal}% of the CPU time during the run")
    pts = small + large
    if pts:
        others = statistics.mean(p.others_pct for p in pts)
        worst = max(pts, key=lambda p: p.others_pct)
        if others > 10 or worst.others_pct > 30:
            warnings.append(
                f"other processes used {others:.0f}% of the machine on average during the points "
                f"(worst {worst.others_pct:.0f}%: {worst.label}, {worst.conns} conn.)")
    if warnings:
        w("> **WARNING: the machine was busy**: " + "; ".join(warnings) +
          ". Absolute numbers are depressed and noisy; the ratios within this run are what count, "
          "and even they carry more noise than usual. See the *others* column.")
        w("")
    if fails:
        w("> **FAILED CHECKS**:")
        for f in fails:
            w(f"> - {f}")
        w("")

    by_key = {(p.id, p.conns): p for p in small}
    if small:
        w("## 1 KiB object")
        w("")
        w("| target | conns | req/s | p50 | p99 | server CPU µs/req | origin CPU µs/req | wrk CPU | others | twin | req/s vs twin | CPU/req vs twin | p99 vs twin |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
        for p in small:
            t = by_key.get((p.twin, p.conns))
            cells = [
                p.label + (" ⚠ " + ", ".join(p.errors) if p.errors else ""),
                str(p.conns), fmt_int(p.rps), fmt_lat(p.p50), fmt_lat(p.p99),
                fmt_num(p.us_per_req), fmt_num(p.origin_us_per_req),
                f"{p.client_pct:.0f}%", f"{p.others_pct:.0f}%",
                t.label if t else "",
                fmt_ratio(ratio(p.rps, t.rps)) if t else "",
                f"**{fmt_ratio(ratio(p.us_per_req, t.us_per_req))}**" if t else "",
                fmt_ratio(ratio(p.p99, t.p99)) if t else "",
            ]
            w("| " + " | ".join(cells) + " |")
        w("")
        w("*server CPU*: utime+stime of the target's processes (nginx master and workers, or the "
          "bordergate process with all its threads) over the point, per request; for a proxy the "
          "origin's own CPU is the next column. *wrk CPU*: the load generator, % of one CPU "
          "(near 100% × its threads means the client was the limit). *others*: CPU of every other "
          "process on the machine, % of all CPUs. *vs twin*: bordergate ÷ its nginx twin (proxy ↔ "
          "proxy, file:// store ↔ static file, TLS ↔ TLS); req/s above 1 and CPU/req below 1 "
          "mean bordergate is ahead.")
        w("")

    lkey = {(p.id, p.size): p for p in large}
    if large:
        w("## Large objects")
        w("")
        w("| target | object | conns | transfers | MB/s | server CPU s/GiB | origin CPU s/GiB | server peak RSS | client CPU | others | MB/s vs twin | CPU/GiB vs twin |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for p in large:
            t = lkey.get((p.twin, p.size))
            cells = [
                p.label + (" ⚠ " + ", ".join(p.errors) if p.errors else ""),
                size_label(p.size), str(p.conns), fmt_int(p.reqs), fmt_int(p.mbps),
                fmt_num(p.s_per_gib, 2), fmt_num(p.origin_s_per_gib, 2),
                f"{p.peak_kb / 1024:.1f} MiB", f"{p.client_pct:.0f}%", f"{p.others_pct:.0f}%",
                fmt_ratio(ratio(p.mbps, t.mbps)) if t else "",
                f"**{fmt_ratio(ratio(p.s_per_gib, t.s_per_gib))}**" if t else "",
            ]
            w("| " + " | ".join(cells) + " |")
        w("")
        w(f"1 MiB: wrk with {meta.get('large_conns')} connections for the point's duration; 1 GiB: "
          "one curl transfer at a time, repeated for the point's duration (sparse file: no disk "
          "space or reads, same bytes on the wire for every target; nothing compresses). MB/s is "
          "10⁶ bytes/s of bodies. Peak RSS is VmHWM reset before the point (nginx: master + "
          "workers summed).")
        w("")

    if rss:
        w("## RSS through a 4 GiB transfer (bordergate, sampled every 250 ms)")
        w("")
        w("| target | MB/s | samples | start | min | max | last | growth | verdict |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for (id_, label, got, tt, n, first, mn, mx, last, verdict, _samples) in rss:
            mbps = int(got) / float(tt) / 1e6 if float(tt) else 0
            mib = lambda kb: f"{int(kb) / 1024:.1f} MiB"
            grow = int(mx) - int(first)
            v = "ok (flat)" if verdict == "ok" else "**FAIL**"
            w(f"| {label} | {mbps:,.0f} | {n} | {mib(first)} | {mib(mn)} | {mib(mx)} | {mib(last)} | {grow / 1024:+.1f} MiB | {v} |")
        w("")
        w("Growth is the largest sample minus the first; above 64 MiB the line fails.")
        w("")

    if fsync:
        w(f"## The disk's own fsync rate (`{meta.get('audit_dir')}`, same directory as the audit log)")
        w("")
        w("| records per fdatasync | fsyncs/s | records/s | p50 fsync | p99 fsync | max fsync |")
        w("|---:|---:|---:|---:|---:|---:|")
        for (batch, n, secs, fps, rps, p50, p99, mx) in fsync:
            w(f"| {batch} × 300 B | {float(fps):,.0f} | {float(rps):,.0f} | {float(p50):.3f} ms | {float(p99):.3f} ms | {float(mx):.2f} ms |")
        w("")
        w("python3 `os.write` of the batch + `os.fdatasync` on a growing file, as the audit "
          "writer does. With one connection every request waits for its own fdatasync, so "
          "bordergate's 1-connection req/s is bounded by the batch-1 fsyncs/s.")
        w("")

    if audit:
        w("## Audit check (after the gateways stopped)")
        w("")
        w("| instance | log | requests (wrk + curl) | decision records | all records | `audit verify` |")
        w("|---|---|---:|---:|---:|---|")
        for (name, log, fs, reqs, dec, recs, verdict) in audit:
            ok = int(dec) >= int(reqs)
            w(f"| {name} | `{os.path.basename(log)}` on {fs} | {int(reqs):,} | {int(dec):,}{'' if ok else ' **< requests**'} | {int(recs):,} | {verdict} |")
        w("")
        w("Every request wrk or curl reported as answered must have its decision record "
          "(decisions ≥ requests: requests still in flight when wrk stopped are audited but not "
          "counted by wrk).")
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
