#!/usr/bin/env python3
"""Ingest: concatenate every order batch into one raw CSV.

    python3 steps/ingest.py --orders data/orders --out build/raw.csv

Reads every `*.csv` in the directory in sorted name order (name batches so
they sort by date: `2017-batch-1.csv`, `2018-batch-2.csv`), checks they all
have the same header, and writes them out with one header. Rows are copied
as they are: cleaning is the next step's job.

Standard library only.
"""

import argparse
import csv
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description="Concatenate the order batches into one CSV.")
    parser.add_argument("--orders", required=True, help="directory of *.csv batches")
    parser.add_argument("--out", required=True, help="CSV file to write")
    args = parser.parse_args(argv)

    if not os.path.isdir(args.orders):
        sys.exit("ingest: %s is not a directory" % args.orders)
    batches = sorted(n for n in os.listdir(args.orders) if n.endswith(".csv"))
    if not batches:
        sys.exit("ingest: no *.csv files in %s; generate one with data/generate.py" % args.orders)

    directory = os.path.dirname(args.out)
    if directory:
        os.makedirs(directory, exist_ok=True)
    header = None
    total = 0
    with open(args.out, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        for name in batches:
            path = os.path.join(args.orders, name)
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                first = next(reader, None)
                if first is None:
                    print("%-28s %6d rows (empty file)" % (name, 0))
                    continue
                if header is None:
                    header = first
                    writer.writerow(header)
                elif first != header:
                    sys.exit("ingest: %s has columns %s, but %s has %s"
                             % (path, ",".join(first), batches[0], ",".join(header)))
                count = 0
                for row in reader:
                    if not row:
                        continue  # a blank line
                    if len(row) != len(header):
                        sys.exit("ingest: %s line %d has %d fields, expected %d"
                                 % (path, reader.line_num, len(row), len(header)))
                    writer.writerow(row)
                    count += 1
            print("%-28s %6d rows" % (name, count))
            total += count
    print("%-28s %6d rows from %d file%s -> %s"
          % ("total", total, len(batches), "" if len(batches) == 1 else "s", args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
