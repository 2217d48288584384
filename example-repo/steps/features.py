"""Feature extraction shared by training, evaluation and serving, so a model
sees the same features at every stage.

`vector(order)` turns one order (a dict of the raw order fields, as strings
from a CSV or numbers from JSON) into a list of floats, in the order of
`FEATURES`. Derived features carry the domain knowledge: how late the parcel
was, how dear the freight was next to the price, and log transforms of the
skewed amounts.

Standard library only.
"""

import math

# The raw numeric fields of an order (every CSV column but order_id and the
# target), in the order the data has them.
RAW = [
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
]

TARGET = "review_score"

DERIVED = [
    "delay_days",          # actual - estimated: negative when early
    "is_late",             # 1 when delivered after the estimate
    "days_late",           # max(0, delay_days), capped at 30
    "freight_ratio",       # freight / price, capped at 3
    "log_price",
    "log_freight",
    "log_payment",
    "log_weight",
    "volume_cm3",          # length * height * width
    "log_description_length",
]

FEATURES = RAW + DERIVED


class FeatureError(ValueError):
    """An order that cannot be turned into features; says which field."""


def number(value, field):
    """A field's value as a float: a number, or a string holding one."""
    if isinstance(value, bool):  # JSON true/false are not numbers here
        raise FeatureError("field %r must be a number, got %r" % (field, value))
    if isinstance(value, (int, float)):
        x = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            x = float(value)
        except ValueError:
            raise FeatureError("field %r must be a number, got %r" % (field, value))
    elif value is None or (isinstance(value, str) and not value.strip()):
        raise FeatureError("field %r is empty" % field)
    else:
        raise FeatureError("field %r must be a number, got %r" % (field, value))
    if math.isnan(x) or math.isinf(x):
        raise FeatureError("field %r must be finite, got %r" % (field, value))
    return x


def raw_values(order):
    """The raw fields of `order` as floats, keyed by name."""
    if not isinstance(order, dict):
        raise FeatureError("an order must be an object of fields, got %s" % type(order).__name__)
    missing = [f for f in RAW if f not in order]
    if missing:
        raise FeatureError("missing field%s: %s" % ("s" if len(missing) > 1 else "", ", ".join(missing)))
    return {f: number(order[f], f) for f in RAW}


def log1p_pos(x):
    return math.log1p(max(0.0, x))


def vector(order):
    """The feature vector of one order, in the order of `FEATURES`."""
    r = raw_values(order)
    if r["price"] <= 0:
        raise FeatureError("field 'price' must be positive, got %r" % order["price"])
    delay = r["actual_delivery_days"] - r["estimated_delivery_days"]
    derived = {
        "delay_days": delay,
        "is_late": 1.0 if delay > 0 else 0.0,
        "days_late": min(max(0.0, delay), 30.0),
        "freight_ratio": min(max(0.0, r["freight_value"]) / r["price"], 3.0),
        "log_price": log1p_pos(r["price"]),
        "log_freight": log1p_pos(r["freight_value"]),
        "log_payment": log1p_pos(r["payment_value"]),
        "log_weight": log1p_pos(r["product_weight_g"]),
        "volume_cm3": r["product_length_cm"] * r["product_height_cm"] * r["product_width_cm"],
        "log_description_length": log1p_pos(r["product_description_length"]),
    }
    return [r[f] for f in RAW] + [derived[f] for f in DERIVED]


def target(order):
    """The review score of a row from the cleaned data."""
    return number(order[TARGET], TARGET)
