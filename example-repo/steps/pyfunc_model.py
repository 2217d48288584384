"""The review-score model as an MLflow pyfunc model (standard library only).

steps/package.py copies this file into the model's `code/` directory, and
the model's MLmodel names it as the `loader_module`: MLflow calls
`_load_pyfunc(path)` with the path of `model.json`, then `predict()` with
what a client sends to `/invocations`:

    {"dataframe_records": [{order fields...}, ...]}  -> {"predictions": [4.213, ...]}

Scores are computed as steps/serve.py computes them: clipped to [1, 5] and
rounded to 3 decimals.
"""

import json

import features


class ReviewScoreModel:
    def __init__(self, model):
        self.model = model

    def score(self, order):
        m = self.model
        s = m["intercept"]
        for xi, mean, sd, w in zip(features.vector(order), m["means"], m["stds"], m["weights"]):
            s += w * (xi - mean) / sd
        return round(min(5.0, max(1.0, s)), 3)

    def predict(self, model_input, params=None):
        """Scores of orders: a pandas DataFrame (what MLflow's scoring server
        passes), a list of order dicts, or one order dict."""
        if hasattr(model_input, "to_dict"):
            rows = model_input.to_dict(orient="records")
        elif isinstance(model_input, dict):
            rows = [model_input]
        else:
            rows = list(model_input)
        return [self.score(order) for order in rows]


def _load_pyfunc(path):
    with open(path, encoding="utf-8") as f:
        model = json.load(f)
    if model.get("kind") != "ridge" or model.get("features") != features.FEATURES:
        raise ValueError("%s is not a ridge model over steps/features.py's features; retrain it" % path)
    return ReviewScoreModel(model)
