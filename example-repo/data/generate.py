#!/usr/bin/env python3
"""Generate a synthetic batch of e-commerce orders, after the public Olist
(Brazilian e-commerce) data set: one row per order with its payment, product,
freight and delivery figures, and the customer's review score (1-5).

The review score has a real signal and a lot of noise, as in the real data:
a late delivery and a high freight/price ratio lower it strongly; more photos
and a longer description raise it slightly.

A few percent of the rows are dirty on purpose, so the cleaning step has work:
empty fields, negative prices, review scores out of range, duplicated orders.

    python3 data/generate.py --seed 42 --rows 4000 --out data/orders/2017-batch-1.csv
    python3 data/generate.py --seed 7 --rows 1500 --drift --out data/orders/2018-batch-2.csv

`--drift` makes a later batch: a carrier in trouble (more late deliveries,
longer delays) and dearer freight, so the score distribution shifts down.

The output is byte-identical for the same arguments, on every run and every
Python 3 version: everything is drawn from one `random.Random(seed)` through
its `random()` method only (whose stream Python keeps stable), and every
number is written with a fixed number of decimals.

Standard library only.
"""

import argparse
import csv
import math
import os
import random
import sys

COLUMNS = [
    "order_id",
    "payment_sequential",
    "payment_installments",
    "payment_value",
    "price",
    "freight_value",
    "product_name_length",
    "product_description_length",
    "product_photos_qty",
    "product_weight_g",
    "product_length_cm",
    "product_height_cm",
    "product_width_cm",
    "estimated_delivery_days",
    "actual_delivery_days",
    "review_score",
]

# Product fields that are often empty in the real data (products without a
# catalogue entry), and so the fields we blank in dirty rows.
BLANKABLE = [
    "product_name_length",
    "product_description_length",
    "product_photos_qty",
    "product_weight_g",
    "product_length_cm",
    "product_height_cm",
    "product_width_cm",
    "freight_value",
]


class Draw:
    """Distributions built on `Random.random()` alone, so the stream of
    numbers does not depend on how a Python version implements `gauss`,
    `randint` or `choice`."""

    def __init__(self, seed):
        self.rng = random.Random(seed)

    def uniform(self, lo, hi):
        return lo + (hi - lo) * self.rng.random()

    def integer(self, lo, hi):
        """An integer in [lo, hi], both included."""
        return lo + int(self.rng.random() * (hi - lo + 1))

    def chance(self, p):
        return self.rng.random() < p

    def normal(self, mu, sigma):
        # Box-Muller; 1 - random() is in (0, 1], so the log is finite.
        u1 = 1.0 - self.rng.random()
        u2 = self.rng.random()
        return mu + sigma * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)

    def lognormal(self, mu, sigma):
        return math.exp(self.normal(mu, sigma))

    def exponential(self, mean):
        return -mean * math.log(1.0 - self.rng.random())

    def hex_id(self):
        # 32 hex digits, like Olist's order ids.
        return "".join("%08x" % int(self.rng.random() * 4294967296.0) for _ in range(4))


def clip(x, lo, hi):
    return lo if x < lo else hi if x > hi else x


def money(x):
    return "%.2f" % x


def order(draw, drift):
    """One clean order, as a dict of strings."""
    # The product.
    weight_g = int(round(clip(draw.lognormal(6.6, 1.1), 50, 30000)))
    scale = (weight_g / 1000.0) ** (1.0 / 3.0)
    length_cm = int(round(clip(draw.normal(30 * scale + 5, 6), 16, 105)))
    height_cm = int(round(clip(draw.normal(15 * scale, 5), 2, 105)))
    width_cm = int(round(clip(draw.normal(22 * scale + 3, 5), 11, 118)))
    name_length = int(round(clip(draw.normal(48, 10), 5, 76)))
    description_length = int(round(clip(draw.lognormal(6.4, 0.75), 4, 3992)))
    photos = int(clip(1 + draw.exponential(1.2), 1, 20))
    price = round(clip(draw.lognormal(4.3 + 0.2 * math.log(weight_g / 735.0), 0.85), 3.5, 4000), 2)

    # Freight: heavier parcels and customers further from the seller pay more.
    distance = draw.uniform(0.3, 2.5)
    freight = 6 + 4.5 * distance + 2.2 * (weight_g / 1000.0) * math.sqrt(distance)
    freight += draw.normal(0, 2)
    if drift:
        freight = freight * 1.25 + 3
    freight = round(clip(freight, 0, 400), 2)

    # Delivery: the estimate is padded; the transit sometimes overruns it.
    estimated = int(round(clip(14 + 6 * distance + draw.normal(0, 4), 3, 60)))
    transit = 3 + 5 * distance + draw.exponential(6.0 if drift else 4.0)
    if drift:
        transit += 2
    actual = int(round(clip(transit, 1, 120)))

    # Payment.
    installments = 1 if draw.chance(0.5) else draw.integer(2, int(clip(1 + price // 30, 2, 10)))
    sequential = 1
    if draw.chance(0.04):
        sequential = 2 if draw.chance(0.75) else 3
    total = price + freight
    if installments >= 7:
        total *= 1 + 0.01 * (installments - 6)  # interest
    if sequential > 1:
        total *= draw.uniform(0.2, 0.8)  # the rest was paid with a voucher
    payment = round(total, 2)

    # The review score: a latent satisfaction, rounded into 1..5.
    delay = actual - estimated
    ratio = freight / price
    latent = 4.6
    if delay > 0:
        latent -= 2.4 + 0.1 * min(delay, 20)
    else:
        latent += 0.02 * min(-delay, 15)
    latent -= 1.0 * max(0.0, min(ratio, 2.0) - 0.25)
    latent += 0.05 * min(photos - 1, 6)
    latent += 0.12 * math.log(description_length / 600.0)
    latent += draw.normal(0, 0.8)
    if draw.chance(0.05):
        latent -= 3.5  # something no feature sees: a wrong item, a rude seller
    score = int(clip(math.floor(latent + 0.5), 1, 5))

    return {
        "order_id": draw.hex_id(),
        "payment_sequential": str(sequential),
        "payment_installments": str(installments),
        "payment_value": money(payment),
        "price": money(price),
        "freight_value": money(freight),
        "product_name_length": str(name_length),
        "product_description_length": str(description_length),
        "product_photos_qty": str(photos),
        "product_weight_g": str(weight_g),
        "product_length_cm": str(length_cm),
        "product_height_cm": str(height_cm),
        "product_width_cm": str(width_cm),
        "estimated_delivery_days": str(estimated),
        "actual_delivery_days": str(actual),
        "review_score": str(score),
    }


def dirty(draw, row):
    """Damages a row the way exports get damaged."""
    kind = draw.integer(0, 2)
    if kind == 0:  # empty fields
        for _ in range(draw.integer(1, 3)):
            row[BLANKABLE[draw.integer(0, len(BLANKABLE) - 1)]] = ""
    elif kind == 1:  # a refund exported as a negative price, or a zero price
        row["price"] = money(-float(row["price"])) if draw.chance(0.8) else "0.00"
    else:  # a review score out of range, or none at all
        row["review_score"] = ["0", "6", "", "NA", "-1"][draw.integer(0, 4)]
    return row


def generate(seed, rows, drift, dirty_rate=0.03, duplicate_rate=0.01):
    draw = Draw(seed)
    out = []
    for _ in range(rows):
        if out and draw.chance(duplicate_rate):
            out.append(dict(out[draw.integer(0, len(out) - 1)]))  # exported twice
            continue
        row = order(draw, drift)
        if draw.chance(dirty_rate):
            row = dirty(draw, row)
        out.append(row)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--drift", action="store_true", help="a later batch: more late deliveries, dearer freight")
    parser.add_argument("--out", required=True, help="CSV file to write")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")

    rows = generate(args.seed, args.rows, args.drift)
    directory = os.path.dirname(args.out)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    late = sum(
        1 for r in rows
        if r["actual_delivery_days"] and int(r["actual_delivery_days"]) > int(r["estimated_delivery_days"])
    )
    print("wrote %d orders to %s (%d late, seed %d%s)"
          % (len(rows), args.out, late, args.seed, ", drift" if args.drift else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
