#!/usr/bin/env python3
"""Train: ridge regression of the review score on the order's features.

    python3 steps/train.py build/train.csv --alpha 0.1 --out build/model.json

Written out plainly, no numpy (sums with math.fsum, which rounds exactly,
so the model has the same bytes on every Python version):
  1. standardise every feature: z = (x - mean) / std (std 1 for a constant);
  2. solve (Z^T Z + alpha I) w = Z^T (y - mean(y)) by Gaussian elimination
     with partial pivoting;
  3. the intercept is mean(y): on centred features it is not regularised.

The model is JSON, with every float rounded to 10 significant digits so the
same data gives the same bytes:
  {"kind": "ridge", "features": [...], "means": [...], "stds": [...],
   "weights": [...], "intercept": x, "alpha": a, "trained_rows": n}

Standard library only.
"""

import argparse
import csv
import json
import math
import os
import sys

import features


def round_sig(x, digits=10):
    """`x` rounded to `digits` significant digits (and -0.0 made 0.0)."""
    r = float("%.*g" % (digits, x))
    return 0.0 if r == 0 else r


def load(path):
    """The feature matrix and targets of a cleaned CSV."""
    X, y = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                X.append(features.vector(row))
                y.append(features.target(row))
            except features.FeatureError as e:
                sys.exit("%s line %d: %s" % (path, line, e))
    return X, y


def standardise(X):
    n, d = len(X), len(X[0])
    means = [math.fsum(row[j] for row in X) / n for j in range(d)]
    stds = []
    for j in range(d):
        var = math.fsum((row[j] - means[j]) ** 2 for row in X) / n
        std = math.sqrt(var)
        stds.append(std if std > 1e-12 else 1.0)
    Z = [[(row[j] - means[j]) / stds[j] for j in range(d)] for row in X]
    return Z, means, stds


def solve(A, b):
    """x with A x = b, by Gaussian elimination with partial pivoting."""
    n = len(A)
    M = [list(A[i]) + [b[i]] for i in range(n)]  # augmented matrix
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(M[r][col]))
        if abs(M[pivot][col]) < 1e-12:
            raise ZeroDivisionError("singular matrix at column %d; raise --alpha" % col)
        M[col], M[pivot] = M[pivot], M[col]
        for r in range(col + 1, n):
            factor = M[r][col] / M[col][col]
            if factor:
                for c in range(col, n + 1):
                    M[r][c] -= factor * M[col][c]
    x = [0.0] * n
    for i in range(n - 1, -1, -1):
        s = M[i][n] - math.fsum(M[i][c] * x[c] for c in range(i + 1, n))
        x[i] = s / M[i][i]
    return x


def fit(X, y, alpha):
    Z, means, stds = standardise(X)
    n, d = len(Z), len(Z[0])
    y_mean = math.fsum(y) / n
    yc = [v - y_mean for v in y]
    # Z^T Z + alpha I and Z^T y, accumulated row by row.
    A = [[0.0] * d for _ in range(d)]
    b = [0.0] * d
    for row, target in zip(Z, yc):
        for i in range(d):
            zi = row[i]
            b[i] += zi * target
            Ai = A[i]
            for j in range(i, d):
                Ai[j] += zi * row[j]
    for i in range(d):
        for j in range(i):
            A[i][j] = A[j][i]
        A[i][i] += alpha
    weights = solve(A, b)
    return means, stds, weights, y_mean


def predict(model, x):
    s = model["intercept"]
    for xi, m, sd, w in zip(x, model["means"], model["stds"], model["weights"]):
        s += w * (xi - m) / sd
    return s


def main(argv=None):
    parser = argparse.ArgumentParser(description="Fit a ridge regression of the review score.")
    parser.add_argument("train", help="training CSV from the split step")
    parser.add_argument("--alpha", type=float, default=0.1, help="L2 penalty on the standardised weights")
    parser.add_argument("--out", required=True, help="model JSON to write")
    args = parser.parse_args(argv)
    if args.alpha < 0:
        parser.error("--alpha must not be negative")

    X, y = load(args.train)
    if len(X) < 2:
        sys.exit("train: %s has %d rows; need at least 2" % (args.train, len(X)))
    try:
        means, stds, weights, intercept = fit(X, y, args.alpha)
    except ZeroDivisionError as e:
        sys.exit("train: %s" % e)

    model = {
        "kind": "ridge",
        "features": list(features.FEATURES),
        "means": [round_sig(v) for v in means],
        "stds": [round_sig(v) for v in stds],
        "weights": [round_sig(v) for v in weights],
        "intercept": round_sig(intercept),
        "alpha": args.alpha,
        "trained_rows": len(X),
    }
    directory = os.path.dirname(args.out)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(model, f, indent=2)
        f.write("\n")

    # Training fit, with the rounded model that was saved.
    predictions = [predict(model, x) for x in X]
    y_mean = math.fsum(y) / len(y)
    sse = math.fsum((p - t) ** 2 for p, t in zip(predictions, y))
    sst = math.fsum((t - y_mean) ** 2 for t in y)
    r2 = 1 - sse / sst if sst > 0 else 0.0
    print("trained ridge (alpha %g) on %d rows, %d features -> %s" % (args.alpha, len(X), len(weights), args.out))
    ranked = sorted(zip(model["features"], model["weights"]), key=lambda fw: -abs(fw[1]))
    for name, w in ranked[:5]:
        print("  %-28s %+.4f" % (name, w))
    print("train r2 %.4f" % r2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
