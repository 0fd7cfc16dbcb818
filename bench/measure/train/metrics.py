"""Classification metrics from predictions (scikit-learn): plain arrays in, plain data out.

Macro-F1 is `sklearn.metrics.f1_score(y_true, y_pred, average="macro")` called exactly so, so that a
reviewer recomputing it from the saved predictions gets the same number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from bench.measure.catalogue import ACCURACY, BALANCED_ACCURACY, MACRO_F1, TOP5_ACCURACY, WEIGHTED_F1


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy (top-1, top-5), macro/weighted F1, balanced accuracy, per-class P/R/F1/support, confusion."""
    y_true = np.asarray(y_true)
    y_pred = probs.argmax(axis=1)
    labels = np.arange(len(classes))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    # top-5 is 1.0 by definition when there are 5 classes or fewer
    top5 = float(top_k_accuracy_score(y_true, probs, k=5, labels=labels)) if len(classes) > 5 else 1.0
    return {
        ACCURACY.key: float(accuracy_score(y_true, y_pred)),
        TOP5_ACCURACY.key: top5,
        MACRO_F1.key: float(f1_score(y_true, y_pred, average="macro")),
        WEIGHTED_F1.key: float(f1_score(y_true, y_pred, average="weighted")),
        BALANCED_ACCURACY.key: float(balanced_accuracy_score(y_true, y_pred)),
        "per_class": {
            "class": list(classes),
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "support": support.tolist(),
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
