#!/usr/bin/env python3
"""Package: the trained model as an MLflow model (the pyfunc flavor).

    python3 steps/package.py build/model.json --out build/mlflow-model

writes a directory MLflow can load and serve (`mlflow models serve -m
build/mlflow-model --env-manager local`), and that steps/serve.py serves as
well:

    build/mlflow-model/
      MLmodel              flavors.python_function: loader_module, code, data
      model.json           the trained model, as train.py wrote it
      code/pyfunc_model.py _load_pyfunc(path) -> an object with predict()
      code/features.py     the feature extraction the model was trained with

Standard library only: MLflow is needed to serve the package, not to write
it. The bytes depend only on the inputs (no timestamps, no uuids), so an
unchanged model packages to the same digest and is not deployed again.
"""

import argparse
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

MLMODEL = """\
# An MLflow model, written by steps/package.py (standard library only).
flavors:
  python_function:
    loader_module: pyfunc_model
    code: code
    data: model.json
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description="Package the model as an MLflow pyfunc model.")
    parser.add_argument("model", help="model JSON from the train step")
    parser.add_argument("--out", required=True, help="the directory to write")
    args = parser.parse_args(argv)

    if not os.path.isfile(args.model):
        sys.exit("package: no model at %s; run the train step first" % args.model)
    tmp = args.out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "code"))
    shutil.copyfile(args.model, os.path.join(tmp, "model.json"))
    for module in ("pyfunc_model.py", "features.py"):
        shutil.copyfile(os.path.join(HERE, module), os.path.join(tmp, "code", module))
    with open(os.path.join(tmp, "MLmodel"), "w", encoding="utf-8", newline="\n") as f:
        f.write(MLMODEL)
    shutil.rmtree(args.out, ignore_errors=True)
    os.replace(tmp, args.out)
    print("packaged %s as an MLflow model in %s" % (args.model, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
