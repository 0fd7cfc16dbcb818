"""Classification metrics from predictions (scikit-learn): plain arrays in, plain data out.

One definition per metric, used everywhere bench computes it (the headline, the per-epoch validation
figure early stopping reads, the report's bootstrap in bench.report.noise):

- **macro-F1** is `sklearn.metrics.f1_score(y_true, y_pred, labels=range(C), average="macro",
  zero_division=0)` over the data set's C classes: every class counts, a class with no true and no
  predicted image scores 0 (zero_division=0). The classes absent from the evaluated set are listed beside
  it (`classes_absent`), so a reader sees when that happened. Recomputing it from the saved predictions'
  `true_index` / `pred_index` with that call gives the reported value exactly.
- **top-5 accuracy** is None ("n/a") with five classes or fewer, where it would be 1 by definition.
- per-class precision/recall/F1/support use the same labels and zero-division policy; classes with fewer
  than `FEW_IMAGES` evaluated images are flagged, their figures rest on a handful of images.
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

FEW_IMAGES = 10  # a class evaluated on fewer images than this is flagged in the per-class table and report
MACRO_F1_DEFINITION = "f1_score(labels=all classes, average='macro', zero_division=0)"


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """bench's macro-F1 (the module docstring's definition)."""
    return float(f1_score(y_true, y_pred, labels=np.arange(n_classes), average="macro", zero_division=0))


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy (top-1, top-5), macro/weighted F1, balanced accuracy, per-class P/R/F1/support, confusion."""
    y_true = np.asarray(y_true)
    y_pred = probs.argmax(axis=1)
    labels = np.arange(len(classes))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    top5 = float(top_k_accuracy_score(y_true, probs, k=5, labels=labels)) if len(classes) > 5 else None
    return {
        ACCURACY.key: float(accuracy_score(y_true, y_pred)),
        TOP5_ACCURACY.key: top5,
        MACRO_F1.key: macro_f1(y_true, y_pred, len(classes)),
        WEIGHTED_F1.key: float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        BALANCED_ACCURACY.key: float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1_definition": MACRO_F1_DEFINITION,
        "classes_absent": [classes[k] for k in labels if support[k] == 0],
        "classes_few_images": [classes[k] for k in labels if 0 < support[k] < FEW_IMAGES],
        "per_class": {
            "class": list(classes),
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "support": support.tolist(),
            "few_images": [bool(0 < n < FEW_IMAGES) for n in support],
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
