#!/usr/bin/env python3
"""Drift: compare the newest order batch with the batches before it (the data
the production model was trained on) with the population stability index of
each feature, and write the figures as metrics.

    python3 steps/drift.py --orders data/orders --out build/drift.json

PSI per feature over ten bins cut at the reference's deciles:
sum((current% - reference%) * ln(current% / reference%)). Under 0.1 is
stable, 0.1-0.2 is a moderate shift, over 0.2 a shift worth retraining for
(the training pipeline's `retrain_when: monitor.metrics.max_psi > 0.2`).
With a single batch there is nothing to compare: every PSI is 0.

Standard library only.
"""

import argparse
import csv
import json
import math
import os
import sys

FEATURES = ["price", "freight_value", "payment_value", "estimated_delivery_days", "actual_delivery_days"]
BINS = 10
EPSILON = 1e-4


def numbers(rows, column):
    out = []
    for row in rows:
        try:
            value = float(row[column])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(value):
            out.append(value)
    return out


def psi(reference, current):
    if not reference or not current:
        return 0.0
    ordered = sorted(reference)
    edges = [ordered[min(len(ordered) - 1, (len(ordered) * i) // BINS)] for i in range(1, BINS)]

    def shares(values):
        counts = [0] * BINS
        for v in values:
            counts[sum(1 for e in edges if v > e)] += 1
        return [max(c / len(values), EPSILON) for c in counts]

    r, c = shares(reference), shares(current)
    return sum((ci - ri) * math.log(ci / ri) for ri, ci in zip(r, c))


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Population stability of the newest batch.")
    parser.add_argument("--orders", required=True, help="directory of *.csv batches")
    parser.add_argument("--out", required=True, help="JSON metrics file to write")
    args = parser.parse_args(argv)

    if not os.path.isdir(args.orders):
        sys.exit("drift: %s is not a directory" % args.orders)
    batches = sorted(n for n in os.listdir(args.orders) if n.endswith(".csv"))
    if not batches:
        sys.exit("drift: no *.csv files in %s" % args.orders)
    current = read(os.path.join(args.orders, batches[-1]))
    reference = [row for name in batches[:-1] for row in read(os.path.join(args.orders, name))]
    scores = {
        feature: round(psi(numbers(reference, feature), numbers(current, feature)), 6)
        for feature in FEATURES
    } if reference else {feature: 0.0 for feature in FEATURES}
    report = {
        "max_psi": max(scores.values()),
        "psi": scores,
        "rows": {"reference": len(reference), "current": len(current)},
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
    print("drift: newest batch %s, max PSI %.3f" % (batches[-1], report["max_psi"]))


if __name__ == "__main__":
    main()
