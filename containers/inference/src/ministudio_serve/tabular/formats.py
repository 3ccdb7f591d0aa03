"""Safe model formats, and the loaded models that predict.

A file is recognised by its bytes, never by its name: a skops zip (scikit-learn), XGBoost's JSON or UBJSON. A
pickle (or joblib file) and anything else are refused before any loader sees them. A skops file is inspected with
`skops.io.get_untrusted_types` first; a type that is neither trusted by skops (numpy, scipy, scikit-learn's own
estimators) nor in `EXTRA_TRUSTED_TYPES` refuses the file, and only then is it loaded with that explicit list.
XGBoost's formats are data that its own parser reads: they hold no code to run.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

# Types skops does not trust by default that this server accepts anyway. Empty on purpose: scikit-learn estimators,
# pipelines and transformers are already trusted by skops; anything else needs a reason to be added here.
EXTRA_TRUSTED_TYPES: frozenset[str] = frozenset()

# Protocol 2+ pickles (and joblib's uncompressed files) open with PROTO (0x80); protocol 0/1 ones open with one of
# these opcodes and end with STOP ("."). Anything unrecognised is refused too; this only picks the clearer message.
_PICKLE_PROTO01_OPCODES = frozenset(b"(cdI]}lN")


class ModelFormat(StrEnum):
    SKOPS = "skops"
    XGBOOST_JSON = "xgboost-json"
    XGBOOST_UBJ = "xgboost-ubj"

    @property
    def framework(self) -> str:
        return "scikit-learn" if self is ModelFormat.SKOPS else "xgboost"

    @property
    def extension(self) -> str:
        return {"skops": "skops", "xgboost-json": "json", "xgboost-ubj": "ubj"}[self.value]


class UnsafeModel(Exception):
    """The file is in a format that could run code when loaded, or names types outside the allow-list."""

    def __init__(self, message: str, code: str, untrusted: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.untrusted = untrusted or []


class InvalidModel(Exception):
    """The file is in a safe format but is not a usable model."""


def detect(data: bytes) -> ModelFormat:
    """The file's format from its first bytes; raises UnsafeModel for pickles and unknown formats."""
    if data.startswith(b"PK\x03\x04"):
        return ModelFormat.SKOPS
    if data.startswith(b"\x80") or (data[:1] and data[0] in _PICKLE_PROTO01_OPCODES and data.rstrip().endswith(b".")):
        raise UnsafeModel(
            "pickle (or joblib) files are refused: they run code when loaded. Upload scikit-learn models as skops "
            "(skops.io.dump) and XGBoost models in XGBoost's JSON or UBJSON format (Booster.save_model).",
            code="pickle_refused",
        )
    stripped = data.lstrip()
    if stripped.startswith(b"{"):
        # UBJSON's object opens with a length marker (i, U, I, l, L); JSON's with a quote, whitespace or `}`.
        return (
            ModelFormat.XGBOOST_JSON
            if stripped[1:2] in (b'"', b"}", b"\n", b" ", b"\r", b"\t")
            else ModelFormat.XGBOOST_UBJ
        )
    raise UnsafeModel(
        "unrecognised model file: expected a skops file (scikit-learn) or an XGBoost JSON/UBJSON model",
        code="unsupported_format",
    )


def check_skops(data: bytes) -> list[str]:
    """The untrusted types this server accepts in the file (to pass to skops); raises UnsafeModel otherwise."""
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(data=data)
    except (zipfile.BadZipFile, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise UnsafeModel(f"not a valid skops file: {exc}", code="invalid_skops") from exc
    refused = sorted(t for t in untrusted if t not in EXTRA_TRUSTED_TYPES)
    if refused:
        raise UnsafeModel(
            f"skops file refused: it contains types outside the allow-list: {', '.join(refused)}",
            code="untrusted_types",
            untrusted=refused,
        )
    return sorted(untrusted)


@dataclass(frozen=True)
class Prediction:
    value: Any  # a class (int/str) for classifiers, a number for regressors
    probabilities: dict[str, float] | None


class LoadedModel:
    """A model ready to predict rows of features in schema order."""

    def __init__(self, fmt: ModelFormat, model: Any, n_features: int) -> None:
        self.format = fmt
        self.model = model
        self.n_features = n_features
        self._objective = _xgb_objective(model) if fmt is not ModelFormat.SKOPS else ""

    def predict(self, row: list[float]) -> Prediction:
        x = np.asarray([row], dtype=np.float64)
        if self.format is ModelFormat.SKOPS:
            return self._predict_sklearn(x)
        return self._predict_xgboost(x)

    def _predict_sklearn(self, x: np.ndarray) -> Prediction:
        from sklearn import config_context

        with config_context(assume_finite=True):  # the schema already refused NaN and inf
            value = _plain(self.model.predict(x)[0])
            if not hasattr(self.model, "predict_proba"):
                return Prediction(value, None)
            proba = self.model.predict_proba(x)[0]
        classes = [_plain(c) for c in self.model.classes_]
        return Prediction(value, {str(c): round(float(p), 6) for c, p in zip(classes, proba, strict=True)})

    def _predict_xgboost(self, x: np.ndarray) -> Prediction:
        # inplace_predict skips building a DMatrix (about 10x faster for one row) and is thread-safe.
        out = np.asarray(self.model.inplace_predict(x))[0]
        if self._objective.startswith("binary:logistic") or self._objective == "binary:logitraw":
            p1 = float(out) if self._objective != "binary:logitraw" else float(1 / (1 + np.exp(-out)))
            return Prediction(int(p1 >= 0.5), {"0": round(1 - p1, 6), "1": round(p1, 6)})
        if self._objective == "multi:softprob":
            return Prediction(int(np.argmax(out)), {str(i): round(float(p), 6) for i, p in enumerate(out)})
        if self._objective in ("multi:softmax", "binary:hinge"):
            return Prediction(int(out), None)
        return Prediction(float(out), None)


def load(data: bytes, fmt: ModelFormat) -> LoadedModel:
    """Load a file whose format `detect` gave; skops files pass `check_skops` again here, whatever called before."""
    if fmt is ModelFormat.SKOPS:
        return _load_skops(data)
    return _load_xgboost(data, fmt)


def _load_skops(data: bytes) -> LoadedModel:
    import skops.io as sio
    from sklearn.base import BaseEstimator

    trusted = check_skops(data)
    try:
        model = sio.loads(data, trusted=trusted)
    except Exception as exc:  # skops raises many types for damaged files; the caller needs one answer
        raise InvalidModel(f"skops file could not be loaded: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, BaseEstimator) or not hasattr(model, "predict"):
        raise InvalidModel(f"the skops file holds a {type(model).__name__}, not a scikit-learn estimator")
    n = getattr(model, "n_features_in_", None)
    if n is None:
        raise InvalidModel("the scikit-learn model is not fitted (no n_features_in_)")
    return LoadedModel(ModelFormat.SKOPS, model, int(n))


def _load_xgboost(data: bytes, fmt: ModelFormat) -> LoadedModel:
    import xgboost as xgb

    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(data))
    except xgb.core.XGBoostError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "unreadable"
        raise InvalidModel(f"not an XGBoost model: {first}") from exc
    booster.set_param({"nthread": 1})  # one row per request: threads would only contend with the server's
    return LoadedModel(fmt, booster, int(booster.num_features()))


def feature_names_of(model: LoadedModel) -> list[str] | None:
    """Feature names the file itself carries (scikit-learn fitted on a frame, XGBoost with feature_names)."""
    if model.format is ModelFormat.SKOPS:
        names = getattr(model.model, "feature_names_in_", None)
    else:
        names = model.model.feature_names
    return [str(n) for n in names] if names is not None else None


def _xgb_objective(booster: Any) -> str:
    config = json.loads(booster.save_config())
    return str(config["learner"]["objective"]["name"])


def _plain(value: Any) -> Any:
    """numpy scalars to JSON-able Python values."""
    return value.item() if isinstance(value, np.generic) else value
