"""Train classical model versions on datasets scikit-learn ships (offline) and register them.

    python -m ministudio_serve.tabular.demo                      # into TABULAR_STORE (or the default store)
    python -m ministudio_serve.tabular.demo --store s3://bucket  # or a directory
    python -m ministudio_serve.tabular.demo --url http://127.0.0.1:8000 --api-key KEY [--tenant acme]

Registers, for the tenant: `logistic_regression` v1, v2 and `xgboost` v1, v2 on breast_cancer (binary), and
`iris_xgboost` v1 (three classes); logistic_regression's latest becomes the active model.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainedVersion:
    model_type: str
    data: bytes  # a skops file or an XGBoost UBJSON/JSON model
    metadata: dict[str, Any]
    sample: dict[str, float] = field(default_factory=dict)  # one held-out row, as input_data


def _dataset(name: str) -> tuple[Any, Any, list[str], list[str]]:
    from sklearn import datasets

    bunch = datasets.load_breast_cancer() if name == "breast_cancer" else datasets.load_iris()
    return bunch.data, bunch.target, [str(n) for n in bunch.feature_names], [str(n) for n in bunch.target_names]


def _metrics(y_true: Any, proba: Any) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    predicted = proba.argmax(axis=1)
    out = {"accuracy": float(accuracy_score(y_true, predicted))}
    out["f1_macro"] = float(f1_score(y_true, predicted, average="macro"))
    if proba.shape[1] == 2:
        out["roc_auc"] = float(roc_auc_score(y_true, proba[:, 1]))
    return {k: round(v, 4) for k, v in out.items()}


def train_versions(seed: int = 0) -> list[TrainedVersion]:
    """Every demo version, trained in a second or two; also used by the tests and the benchmark."""
    import numpy as np
    import skops.io as sio
    import xgboost as xgb
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    trained: list[TrainedVersion] = []
    for dataset in ("breast_cancer", "iris"):
        x, y, names, targets = _dataset(dataset)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
        sample = dict(zip(names, (float(v) for v in x_te[0]), strict=True))
        made: list[tuple[str, bytes, Any, str]] = []  # model type, file, held-out probabilities, description
        if dataset == "breast_cancer":
            for c in (0.05, 1.0):
                lr = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(x_tr, y_tr)
                made.append(
                    ("logistic_regression", sio.dumps(lr), lr.predict_proba(x_te), f"LogisticRegression(C={c})")
                )
            for depth, fmt in ((2, "json"), (4, "ubj")):
                clf = xgb.XGBClassifier(n_estimators=40, max_depth=depth, random_state=seed, n_jobs=1).fit(x_tr, y_tr)
                raw = bytes(clf.get_booster().save_raw(raw_format=fmt))
                made.append(("xgboost", raw, clf.predict_proba(x_te), f"XGBClassifier(max_depth={depth}), {fmt}"))
        else:
            clf = xgb.XGBClassifier(n_estimators=30, max_depth=3, random_state=seed, n_jobs=1).fit(x_tr, y_tr)
            raw = bytes(clf.get_booster().save_raw(raw_format="ubj"))
            made.append(("iris_xgboost", raw, np.asarray(clf.predict_proba(x_te)), "XGBClassifier(max_depth=3)"))
        for model_type, data, proba, description in made:
            meta = {
                "features": [{"name": n, "type": "float"} for n in names],
                "target_names": targets,
                "metrics": _metrics(y_te, proba),
                "description": f"{description} on scikit-learn's {dataset} ({len(x_tr)} training rows)",
            }
            trained.append(TrainedVersion(model_type, data, meta, sample))
    return trained


def register_direct(store: str, tenant: str, versions: list[TrainedVersion]) -> list[dict[str, Any]]:
    from ministudio_serve.tabular.store import build_store
    from ministudio_serve.tabular.versions import UploadMeta, Versions

    known = Versions(build_store(store))
    done = []
    for v in versions:
        meta = known.register(tenant, v.model_type, v.data, UploadMeta.model_validate(v.metadata), None, False)
        done.append({"model_type": meta.model_type, "version": meta.version, "metrics": meta.metrics})
    known.set_active(tenant, "logistic_regression", "latest")
    return done


def register_http(url: str, api_key: str | None, tenant: str, versions: list[TrainedVersion]) -> list[dict[str, Any]]:
    import httpx

    headers = {"X-Tenant-ID": tenant, **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
    done = []
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=60) as client:
        for v in versions:
            response = client.post(
                f"/models/{v.model_type}/versions",
                files={"file": ("model", v.data, "application/octet-stream")},
                data={"metadata": json.dumps(v.metadata)},
            )
            response.raise_for_status()
            meta = response.json()
            done.append({"model_type": meta["model_type"], "version": meta["version"], "metrics": meta["metrics"]})
        client.put("/models/active", json={"model_type": "logistic_regression", "version": "latest"}).raise_for_status()
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ministudio_serve.tabular.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running `ministudio-serve --profile tabular`; else register into --store")
    parser.add_argument("--api-key", help="the server's key (with --url)")
    parser.add_argument("--store", help="s3://bucket[/prefix] or a directory; default: the server's settings")
    parser.add_argument("--tenant", default="default")
    args = parser.parse_args(argv)
    versions = train_versions()
    if args.url:
        done = register_http(args.url, args.api_key, args.tenant, versions)
        where = args.url
    else:
        from ministudio_serve.settings import ServeSettings

        where = args.store or ServeSettings().tabular_store_location
        done = register_direct(where, args.tenant, versions)
    for row in done:
        print(f"registered {row['model_type']} {row['version']} {json.dumps(row['metrics'])}")
    print(f"tenant {args.tenant!r} in {where}: active model logistic_regression (latest)")
    sample = next(v.sample for v in versions if v.model_type == "logistic_regression")
    print(
        "try: curl -X POST <server>/predict -H 'Content-Type: application/json' -H 'X-Tenant-ID: " + args.tenant + "'"
    )
    print("     -d '" + json.dumps({"input_data": sample}) + "'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
