#!/usr/bin/env python3
"""Split: hold out a test set, deterministically.

    python3 steps/split.py build/clean.csv --seed 42 --test-fraction 0.2 \
        --train build/train.csv --test build/test.csv

Each order goes to the test set when a hash of (seed, order_id) falls below
the fraction. The split does not depend on row order, and an order stays on
its side when new batches arrive: a model is never tested on orders an
earlier model trained on.

Standard library only.
"""

import argparse
import csv
import hashlib
import os
import sys


def in_test(seed, order_id, fraction):
    digest = hashlib.sha256(("%d:%s" % (seed, order_id)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < fraction


def write(path, header, rows):
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Split the cleaned orders into train and test sets.")
    parser.add_argument("clean", help="CSV from the clean step")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    args = parser.parse_args(argv)
    if not 0 < args.test_fraction < 1:
        parser.error("--test-fraction must be between 0 and 1, got %s" % args.test_fraction)

    with open(args.clean, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        rows = list(reader)
    train, test = [], []
    for row in rows:
        (test if in_test(args.seed, row["order_id"], args.test_fraction) else train).append(row)
    if not train or not test:
        sys.exit("split: %d rows give %d to train and %d to test; need both" % (len(rows), len(train), len(test)))
    write(args.train, header, train)
    write(args.test, header, test)
    print("train %6d rows -> %s" % (len(train), args.train))
    print("test  %6d rows -> %s (%.1f%%)" % (len(test), args.test, 100.0 * len(test) / len(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
