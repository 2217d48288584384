#!/usr/bin/env python3
"""Evaluate: score the model on the held-out orders.

    python3 steps/evaluate.py build/model.json build/test.csv --out build/metrics.json

Predictions are clipped to the score range [1, 5]. Writes numbers only, so
runner can gate on them and diff them:
  {"mse": .., "rmse": .., "r2": .., "test_rows": n}

Standard library only.
"""

import argparse
import csv
import json
import math
import os
import sys

import features


def load_model(path):
    with open(path, encoding="utf-8") as f:
        model = json.load(f)
    if model.get("kind") != "ridge":
        sys.exit("evaluate: %s is not a ridge model" % path)
    if model.get("features") != features.FEATURES:
        sys.exit("evaluate: %s was trained on other features than steps/features.py makes" % path)
    return model


def predict(model, x):
    s = model["intercept"]
    for xi, m, sd, w in zip(x, model["means"], model["stds"], model["weights"]):
        s += w * (xi - m) / sd
    return min(5.0, max(1.0, s))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Score the model on the test set.")
    parser.add_argument("model", help="model JSON from the train step")
    parser.add_argument("test", help="test CSV from the split step")
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    args = parser.parse_args(argv)

    model = load_model(args.model)
    truth, predicted = [], []
    with open(args.test, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                predicted.append(predict(model, features.vector(row)))
                truth.append(features.target(row))
            except features.FeatureError as e:
                sys.exit("%s line %d: %s" % (args.test, line, e))
    n = len(truth)
    if n == 0:
        sys.exit("evaluate: %s has no rows" % args.test)

    mean = math.fsum(truth) / n
    mse = math.fsum((p - t) ** 2 for p, t in zip(predicted, truth)) / n
    var = math.fsum((t - mean) ** 2 for t in truth) / n
    metrics = {
        "mse": round(mse, 6),
        "rmse": round(math.sqrt(mse), 6),
        "r2": round(1 - mse / var, 6) if var > 0 else 0.0,
        "test_rows": n,
    }
    directory = os.path.dirname(args.out)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
        f.write("\n")
    for key in ["mse", "rmse", "r2"]:
        print("%-9s %.4f" % (key, metrics[key]))
    print("%-9s %d" % ("test_rows", n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
