"""Turns a contact-floor run (bench/contact-floor.sh) into JSON, an SVG chart and a table.

Usage: report.py WORK_DIR OUT_PREFIX CLIENTS DURATION CASES BATCH...
"""

import json
import math
import re
import sys


def tps(path):
    text = open(path, encoding="utf-8").read()
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
    if not match:
        sys.exit(f"error: no tps in {path}")
    failed = re.search(r"number of failed transactions: (\d+)", text)
    latency = re.search(r"latency average = ([0-9.]+) ms", text)
    return float(match.group(1)), int(failed.group(1)) if failed else 0, float(latency.group(1))


def chart(report, path):
    width, height, left, right, top, bottom = 760, 420, 70, 190, 40, 50
    rows = report["floor"]
    batches = sorted({r["batch"] for r in rows})
    echo = report["ceilings"]["echo_per_sec"]
    lines = {"40 % of echo": 0.4 * echo, "20 % of echo": 0.2 * echo,
             "single-row insert": report["ceilings"]["postgres_insert_per_sec"]}
    top_value = max([r["contacts_per_sec"] for r in rows] + list(lines.values())) * 1.1
    lo, hi = math.log2(batches[0]), math.log2(batches[-1]) or 1

    def x(b):
        span = (hi - lo) or 1
        return left + (math.log2(b) - lo) / span * (width - left - right)

    def y(v):
        return top + (1 - v / top_value) * (height - top - bottom)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="22" font-size="14">Contacts a second PostgreSQL alone takes, by contacts per transaction ({report["clients"]} clients)</text>']
    # Round gridlines: 1, 2 or 5 times a power of ten, about five of them.
    raw = top_value / 5
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    for i in range(0, int(top_value // step) + 1):
        v = i * step
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
    for b in batches:
        out.append(f'<text x="{x(b):.1f}" y="{height - bottom + 18}" text-anchor="middle">{b}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">contacts per transaction</text>')
    for (label, value), colour in zip(lines.items(), ["#c0392b", "#e67e22", "#7f8c8d"]):
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="{colour}" stroke-dasharray="6 4"/>')
        out.append(f'<text x="{width - right + 6}" y="{y(value) + 4:.1f}" fill="{colour}">{label} {value:,.0f}/s</text>')
    for script, colour in [("contact", "#2471a3"), ("minimal", "#27ae60")]:
        points = [(x(r["batch"]), y(r["contacts_per_sec"])) for r in rows if r["script"] == script]
        out.append('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(
            colour, " ".join(f"{a:.1f},{b:.1f}" for a, b in points)))
        for a, b in points:
            out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{colour}"/>')
    for i, (label, colour) in enumerate([("contact: all a merged contact writes and reads", "#2471a3"),
                                         ("minimal: only the rows it cannot do without", "#27ae60")]):
        # Bottom right: the curves rise from the bottom left, so that corner stays empty.
        lx, ly = width - right - 300, height - bottom - 36 + 16 * i
        out.append(f'<line x1="{lx}" x2="{lx + 20}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{lx + 26}" y="{ly + 4}">{label}</text>')
    out.append("</svg>")
    open(path, "w", encoding="utf-8").write("\n".join(out) + "\n")


def main():
    work, prefix, clients, duration, cases = sys.argv[1:6]
    batches = [int(b) for b in sys.argv[6:]]
    ceilings = json.load(open(f"{work}/ceilings.json", encoding="utf-8"))["ceilings"]
    echo = ceilings["echo"]["ok_per_sec"]
    insert = ceilings["postgres_insert"]["ok_per_sec"]
    rows = []
    for script in ("contact", "minimal"):
        for b in batches:
            rate, failed, latency = tps(f"{work}/{script}-{b}.log")
            rows.append({"script": script, "batch": b, "transactions_per_sec": rate,
                         "contacts_per_sec": rate * b, "share_of_echo": rate * b / echo,
                         "latency_avg_ms": latency, "failed": failed})
    report = {"clients": int(clients), "duration_secs": int(duration), "cases": int(cases),
              "ceilings": {"echo_per_sec": echo, "postgres_insert_per_sec": insert}, "floor": rows}
    json.dump(report, open(f"{prefix}.json", "w", encoding="utf-8"), indent=2)
    chart(report, f"{prefix}.svg")
    print(f"echo ceiling {echo:,.0f}/s (40 %: {0.4 * echo:,.0f}/s), single-row insert {insert:,.0f}/s")
    print("| script | contacts per transaction | contacts/s | share of echo |")
    print("|---|---|---|---|")
    for r in rows:
        print(f'| {r["script"]} | {r["batch"]} | {r["contacts_per_sec"]:,.0f} | {100 * r["share_of_echo"]:.1f} % |')
    print(f"written: {prefix}.json, {prefix}.svg")
    if any(r["failed"] for r in rows):
        sys.exit("error: some pgbench transactions failed")


if __name__ == "__main__":
    main()
