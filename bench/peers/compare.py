#!/usr/bin/python3
"""compare.py DIR: the table of `make bench-peer` from the JSON results in
DIR (switchyard-idle.json, django-idle.json, switchyard-fanout.json,
django-fanout.json, as printed by `switchyard bench ... --json`). Standard
library only."""

import argparse
import json
import os
import sys


def load(d, name):
    try:
        with open(os.path.join(d, name + ".json")) as f:
            return json.loads(f.read() or '{"error": "no output"}')
    except (OSError, ValueError) as e:
        return {"error": str(e)}


def versions():
    try:
        import channels
        import daphne
        import django

        return f"Django {django.get_version()}, channels {channels.__version__}, daphne {daphne.__version__}"
    except ImportError:
        return "Django Channels (versions unknown: not importable by " + sys.executable + ")"


def get(r, *path):
    for k in path:
        if not isinstance(r, dict) or k not in r:
            return None
        r = r[k]
    return r


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "MB":
        return f"{v / 1e6:.1f} MB"
    if unit == "B":
        return f"{v / 1e3:.1f} kB" if abs(v) >= 1e4 else f"{v:.0f} B"
    if unit == "ms":
        return f"{v:.2f} ms"
    if unit == "/s":
        return f"{v:,.0f}"
    return str(v)


def ratio(s, d):
    if s is None or d is None or not isinstance(s, (int, float)) or not isinstance(d, (int, float)) or s <= 0:
        return "-"
    return f"{d / s:.2f}x"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--switchyard-version", default="switchyard")
    a = ap.parse_args()
    si, di = load(a.dir, "switchyard-idle"), load(a.dir, "django-idle")
    sf, df = load(a.dir, "switchyard-fanout"), load(a.dir, "django-fanout")

    rows = [  # label, result pair, path, unit, ratio?
        ("idle: connections", (si, di), ("conns",), "", False),
        ("idle: connects/s", (si, di), ("connects_per_sec",), "/s", True),
        ("idle: RSS before", (si, di), ("rss_before_bytes",), "MB", False),
        ("idle: RSS after", (si, di), ("rss_after_bytes",), "MB", False),
        ("idle: RSS per connection (lower is better)", (si, di), ("bytes_per_conn",), "B", True),
        ("fanout: subscribers / channels", (sf, df), None, "", False),
        ("fanout: publications/s", (sf, df), ("publications_per_sec",), "/s", False),
        ("fanout: deliveries/s (higher is better)", (sf, df), ("deliveries_per_sec",), "/s", True),
        ("fanout: delivered / expected", (sf, df), None, "", False),
        ("fanout: disconnects / publish errors", (sf, df), None, "", False),
        ("fanout: p50 latency (lower is better)", (sf, df), ("latency_ms", "p50"), "ms", True),
        ("fanout: p99 latency (lower is better)", (sf, df), ("latency_ms", "p99"), "ms", True),
        ("fanout: max latency", (sf, df), ("latency_ms", "max"), "ms", False),
    ]
    table = [("", a.switchyard_version, "Django Channels", "Django / Switchyard")]
    for label, (s, d), path, unit, want_ratio in rows:
        if path is None:
            def cell(r, label=label):
                if "error" in r:
                    return "-"
                if label.endswith("channels"):
                    return f"{r.get('conns')} / {r.get('channels')}"
                if label.endswith("expected"):
                    return f"{r.get('deliveries')} / {r.get('expected_deliveries')}"
                return f"{r.get('disconnects')} / {r.get('publish_errors')}"

            table.append((label, cell(s), cell(d), ""))
            continue
        sv, dv = get(s, *path), get(d, *path)
        table.append((label, fmt(sv, unit), fmt(dv, unit), ratio(sv, dv) if want_ratio else ""))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    print(f"Switchyard ({a.switchyard_version}) vs {versions()}: one daphne process, InMemoryChannelLayer")
    for i, row in enumerate(table):
        print("  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for name, r in (("Switchyard idle", si), ("Django idle", di), ("Switchyard fanout", sf), ("Django fanout", df)):
        if "error" in r:
            print(f"{name} FAILED: {r['error']}")
    if si.get("rss_source") == "metrics" and di.get("rss_source") == "proc":
        print("RSS: Switchyard from its /metrics (process_resident_memory_bytes), daphne from /proc/PID/status (VmRSS).")


if __name__ == "__main__":
    main()
