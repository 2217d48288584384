#!/usr/bin/env python3
"""Clean: drop the rows a model must not learn from, fill the gaps.

    python3 steps/clean.py build/raw.csv --out build/clean.csv --report build/clean-report.json

A row is dropped, for the first of these reasons that applies:
  - its review_score is missing or not an integer in 1..5;
  - its price is missing, negative or zero (refunds, broken exports);
  - its order_id was already seen (the first copy is kept).
Every other missing or non-numeric field is imputed with the median of its
column over the rows kept.

The report holds counts only, so runner can record and diff them as metrics
(`metrics.clean.rows_out`, ...).

Standard library only.
"""

import argparse
import csv
import json
import os
import sys

import features

# Columns that hold whole numbers; an imputed median is rounded for them.
INTEGER_COLUMNS = {
    "payment_sequential",
    "payment_installments",
    "product_name_length",
    "product_description_length",
    "product_photos_qty",
    "product_weight_g",
    "product_length_cm",
    "product_height_cm",
    "product_width_cm",
    "estimated_delivery_days",
    "actual_delivery_days",
}


def parse_float(text):
    try:
        x = float(text)
    except (TypeError, ValueError):
        return None
    if x != x or x in (float("inf"), float("-inf")):
        return None
    return x


def valid_score(text):
    x = parse_float(text)
    return x is not None and x == int(x) and 1 <= x <= 5


def median(values):
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return None
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def write_json(path, value):
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Drop invalid orders and impute missing fields.")
    parser.add_argument("raw", help="CSV from the ingest step")
    parser.add_argument("--out", required=True, help="cleaned CSV to write")
    parser.add_argument("--report", required=True, help="JSON report of the counts")
    args = parser.parse_args(argv)

    with open(args.raw, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        rows = list(reader)
    missing = [c for c in ["order_id", features.TARGET] + features.RAW if c not in header]
    if missing:
        sys.exit("clean: %s lacks the column%s %s" % (args.raw, "s" if len(missing) > 1 else "", ", ".join(missing)))

    counts = {"rows_in": len(rows), "dropped_invalid_score": 0, "dropped_bad_price": 0, "dropped_duplicate": 0}
    kept = []
    seen = set()
    for row in rows:
        if not valid_score(row[features.TARGET]):
            counts["dropped_invalid_score"] += 1
            continue
        price = parse_float(row["price"])
        if price is None or price <= 0:
            counts["dropped_bad_price"] += 1
            continue
        order_id = row["order_id"].strip()
        if order_id in seen:
            counts["dropped_duplicate"] += 1
            continue
        seen.add(order_id)
        row[features.TARGET] = str(int(float(row[features.TARGET])))
        kept.append(row)

    # Impute every gap with its column's median over the rows kept.
    imputed = 0
    for column in features.RAW:
        present = [x for x in (parse_float(r[column]) for r in kept) if x is not None]
        gaps = [r for r in kept if parse_float(r[column]) is None]
        if not gaps:
            continue
        m = median(present)
        if m is None:
            sys.exit("clean: column %s has no value at all to impute from" % column)
        fill = str(int(round(m))) if column in INTEGER_COLUMNS else "%.2f" % m
        for r in gaps:
            r[column] = fill
        imputed += len(gaps)
        print("imputed %4d x %-28s with the median %s" % (len(gaps), column, fill))

    counts["rows_out"] = len(kept)
    counts["imputed"] = imputed

    directory = os.path.dirname(args.out)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
    write_json(args.report, {"clean": counts})

    for key in ["rows_in", "dropped_invalid_score", "dropped_bad_price", "dropped_duplicate", "imputed", "rows_out"]:
        print("%-22s %6d" % (key, counts[key]))
    if not kept:
        sys.exit("clean: no row survived cleaning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
