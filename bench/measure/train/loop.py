"""`train`: train the cell's model on a dataset with its strategy and precision, then evaluate.

One seed (the cell's) drives python, numpy, torch and the DataLoader generator, and training re-seeds
all of them from it when it starts: what the cell measured before (`profile`, `speed` draw random inputs)
does not change the data order, augmentation or dropout, so the same training settings learn the same
weights whatever else the cell measures, as a plain training script with that seed would. Per epoch: train loss,
val loss, val accuracy, val macro-F1, lr, epoch time and train img/s. Early stopping watches a chosen
metric with a patience; the best checkpoint is kept in the run directory and reloaded for the final
evaluation, whose predictions (true label, predicted label, class probabilities) are saved beside the
cell so that any metric can be recomputed later. bf16/fp16 use autocast; fp16 adds a GradScaler.
"""

from __future__ import annotations

import copy
import csv
import io
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.core.errors import Diverged, InputError, SkipCell
from bench.core.files import atomic_write, atomic_write_text
from bench.core.metric import LOWER
from bench.data import load_samples, stratified_split
from bench.data.base import three_way_split
from bench.data.images import decode_all
from bench.data.loader import CachedImages, make_loader
from bench.measure.base import CellContext, Measurement
from bench.measure.catalogue import (
    BEST_EPOCH,
    EPOCHS_RUN,
    SELECTION,
    TRAIN_THROUGHPUT,
    VAL_ACCURACY,
    VAL_LOSS,
    VAL_MACRO_F1,
)
from bench.measure.energy import NOT_ASKED, TrainingEnergy
from bench.measure.registry import register_measurement
from bench.measure.train.datapath import end_to_end_speed
from bench.measure.train.metrics import classification_metrics, macro_f1
from bench.measure.train.settings import DataSettings, Strategy, TrainSettings
from bench.measure.train.strategies import make_loss, make_sampler
from bench.models.builders import classifier_prefix
from bench.platform.device import (
    autocast,
    cpu_precision_is_native,
    cpu_precision_slowdown,
    require_precision,
    synchronize,
)
from bench.platform.energy import EnergyMeter


def _optimizer(s: TrainSettings, params) -> torch.optim.Optimizer:
    # fused Adam/AdamW: one kernel per step instead of foreach temporaries, about ten times faster on a CPU
    # for large layers (docs/measurements-log.md, "Figures behind constants in the code").
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay, fused=True)
    if s.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay, fused=True)
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    return torch.optim.RMSprop(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)


def _scheduler(s: TrainSettings, opt: torch.optim.Optimizer):
    if s.scheduler == "plateau":
        lower = s.early_stopping is not None and SELECTION[s.early_stopping.metric].direction == LOWER
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min" if lower else "max", factor=s.lr_gamma, patience=2
        )
    if s.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s.epochs)
    if s.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=s.step_size, gamma=s.lr_gamma)
    return None


def seed_training(seed: int) -> None:
    """Python's, numpy's and torch's global random state from the cell's seed, as training starts (dropout,
    augmentation and anything else drawing from them); the loaders' own generators are seeded apart."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def freeze_all_but_head(model: nn.Module) -> None:
    """Transfer learning: only the final classification layer trains."""
    head = classifier_prefix(model)
    for name, p in model.named_parameters():
        p.requires_grad_(head is not None and name.startswith(head + "."))


class EarlyStopper:
    """Tracks the best value of a metric; `step` returns True when patience has run out."""

    def __init__(self, patience: int, mode: str) -> None:
        self.patience, self.mode = patience, mode
        self.best: float | None = None
        self.best_epoch = -1
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def step(self, epoch: int, value: float) -> bool:
        if self.improved(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return False
        self.bad_epochs += 1
        return self.bad_epochs >= self.patience


@torch.inference_mode()
def predict(model: nn.Module, loader, device: torch.device, precision: str, loss_fn: nn.Module | None = None):
    """(probabilities, true labels, mean loss) over a loader, in eval mode."""
    was = model.training
    model.eval()
    probs, ys, loss_sum, n = [], [], 0.0, 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, precision):
            logits = model(x)
        logits = logits.float()
        if loss_fn is not None:
            loss_sum += float(loss_fn(logits, y)) * len(y)
        n += len(y)
        probs.append(torch.softmax(logits, dim=1).cpu())
        ys.append(y.cpu())
    model.train(was)
    return torch.cat(probs).numpy(), torch.cat(ys).numpy(), (loss_sum / n if n else float("nan"))


# (class probabilities, true labels, mean loss) of one evaluation
Evaluation = tuple[np.ndarray, np.ndarray, float]
EVALUATED_ON = "test"  # where the headline metrics come from (runs before the three-way split: validation)
PREDICTIONS_FILE = "predictions.csv"  # test predictions
VAL_PREDICTIONS_FILE = "val_predictions.csv"


def _predict_with(model: nn.Module, state, loader, device: torch.device, precision: str, loss_fn) -> Evaluation:
    """Predictions of the checkpoint `state` (None: the model as it is), leaving the model as it was."""
    if state is None:
        return predict(model, loader, device, precision, loss_fn)
    current = copy.deepcopy(model.state_dict())
    model.load_state_dict(state)
    try:
        return predict(model, loader, device, precision, loss_fn)
    finally:
        model.load_state_dict(current)


def _predictions_csv(keys: list[str], y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["key", "true_index", "true_label", "pred_index", "pred_label"] + [f"p_{c}" for c in classes])
    pred = probs.argmax(axis=1)
    for i, key in enumerate(keys):
        writer.writerow(
            [key, int(y_true[i]), classes[y_true[i]], int(pred[i]), classes[pred[i]]] + [f"{p:.6g}" for p in probs[i]]
        )
    return buf.getvalue()


def prepare_data(s: DataSettings, resolution: int, seed: int, base_dir: Path):
    """Samples -> three-way split -> decoded tensors. Returns (train_ds, val_ds, test_ds, info).

    Validation selects (early stopping, the best checkpoint, the plateau scheduler); test is what every
    reported metric is computed on; the two never share an image (their keys are in `info`)."""
    samples = load_samples(s.kind, s.options, base_dir)
    classes = samples.classes
    if len(classes) < 2:
        raise InputError(
            f"the label column has a single class ('{classes[0]}') in {samples.description}",
            field="data",
            hint="classification needs at least two classes",
        )
    labels = samples.label_indices(classes)
    given_split = next((n for n in samples.notes if n.startswith("split:")), None)
    if s.subset is not None and s.subset < 1:
        keep, _ = stratified_split(labels, 1 - s.subset, s.split_seed)
        samples, labels = samples.subset(keep), labels[keep]
    decoded = decode_all(samples, resolution, on_bad_image=s.on_bad_image, workers=s.workers or None)
    kept = decoded.kept
    labels_kept = labels[kept]
    if given_split is not None and s.subset is None:
        # the source's own test files are the test set; validation is carved from its training files
        n_train = int(given_split.split(":")[1])
        from_train = np.flatnonzero(kept < n_train)
        test_idx = np.flatnonzero(kept >= n_train)
        fit, held = stratified_split(labels_kept[from_train], s.val_fraction, s.split_seed)
        train_idx, val_idx = from_train[fit], from_train[held]
        test_source = "the source's test files"
    else:
        train_idx, val_idx, test_idx = three_way_split(
            labels_kept, s.val_fraction, s.test_fraction, s.split_seed, classes
        )
        test_source = f"a stratified {s.test_fraction:g} of the images (split_seed {s.split_seed})"
    images = decoded.images
    y = torch.from_numpy(labels_kept)
    train_ds = CachedImages(images[train_idx], y[train_idx], mean=s.mean, std=s.std, hflip=s.hflip, crop_pad=s.crop_pad)
    val_ds = CachedImages(images[val_idx], y[val_idx], mean=s.mean, std=s.std)
    test_ds = CachedImages(images[test_idx], y[test_idx], mean=s.mean, std=s.std)
    counts = np.bincount(labels_kept[train_idx], minlength=len(classes))
    info = {
        "dataset": samples.description,
        "synthetic": samples.synthetic,
        "classes": classes,
        "train_class_counts": counts.tolist(),
        "test_class_counts": np.bincount(labels_kept[test_idx], minlength=len(classes)).tolist(),
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "n_test": int(len(test_idx)),
        "test_source": test_source,
        "bad_images_skipped": len(decoded.bad),
        "bad_images": [f"{f}: {r}" for f, r in decoded.bad[:20]],
        "converted_to_rgb": decoded.converted,
        "val_keys": [samples.keys[int(kept[i])] for i in val_idx],
        "test_keys": [samples.keys[int(kept[i])] for i in test_idx],
        # the test images as files (or arrays) again, for the end-to-end timing (bench.measure.train.datapath)
        "test_samples": samples.subset(kept[test_idx]),
        "test_labels": labels_kept[test_idx].tolist(),
    }
    return train_ds, val_ds, test_ds, info


def _data_notes(info: dict[str, Any]) -> str | None:
    """One line on what was done to the data: colour modes converted to RGB, bad images skipped."""
    notes = []
    converted = info["converted_to_rgb"]
    if converted:
        modes = ", ".join(f"{mode} {n}" for mode, n in sorted(converted.items()))
        notes.append(f"{sum(converted.values())} images converted to RGB ({modes}; alpha composited on white)")
    if info["bad_images_skipped"]:
        notes.append(
            f"{info['bad_images_skipped']} bad images skipped (on_bad_image: skip), e.g. {info['bad_images'][0]}"
        )
    return "; ".join(notes) or None


@register_measurement
class Train(Measurement):
    name = "train"
    Settings = TrainSettings
    description = "train with the cell's strategy and precision; accuracy, macro-F1, per-class metrics, curves"

    def measure(self, ctx: CellContext) -> dict[str, Any]:
        s: TrainSettings = self.settings
        cell, device = ctx.cell, ctx.device
        require_precision(device, cell.precision)
        if device.type == "cpu" and not cpu_precision_is_native(cell.precision) and not s.cpu_emulated_precision:
            # Without bf16/fp16 units autocast is emulated, tens of times slower than fp32 (docs/measurements-log.md).
            # Inference (`speed`) still measures it; training there is opt-in, so a CPU sweep is not held up for hours.
            raise SkipCell(
                f"{cell.precision} training on this CPU is emulated (no {cell.precision} arithmetic units used, "
                f"capability {torch.backends.cpu.get_cpu_capability()}; a small conv block's training step measured "
                f"{cpu_precision_slowdown(cell.precision):.0f}x fp32, resnet18 25-160x): measure it on a GPU "
                "or a CPU with AVX512-BF16/AMX, or set settings.train.cpu_emulated_precision: true to train anyway"
            )
        strategy = Strategy.model_validate(cell.strategy_config or {})
        seed_training(cell.seed)
        if s.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        energy = (
            TrainingEnergy(EnergyMeter(device.type, device.index or 0), s.energy_idle_s)
            if s.energy
            else TrainingEnergy(None, s.energy_idle_s, reason=NOT_ASKED)
        )
        try:
            return self._train(ctx, s, strategy, energy)
        finally:
            energy.close()  # also when the training fails: an NVML handle must not outlive the cell
            if s.deterministic:
                torch.use_deterministic_algorithms(False)

    def _train(self, ctx: CellContext, s: TrainSettings, strategy: Strategy, energy: TrainingEnergy) -> dict[str, Any]:
        cell, device, model = ctx.cell, ctx.device, ctx.model
        train_ds, val_ds, test_ds, info = prepare_data(s.data, cell.resolution, cell.seed, ctx.base_dir)
        n_classes = len(info["classes"])
        if n_classes != cell.num_classes:
            raise InputError(
                f"the data has {n_classes} classes but the suite's num_classes is {cell.num_classes}",
                field="num_classes",
                hint=f"set num_classes: {n_classes}",
            )
        if cell.batch_size > len(train_ds):
            raise InputError(
                f"batch size {cell.batch_size} is larger than the training set ({len(train_ds)} images)",
                field="batch_size",
                hint="use a smaller batch size or more data",
            )
        counts = np.asarray(info["train_class_counts"])
        generator = torch.Generator().manual_seed(cell.seed)
        sampler = make_sampler(strategy.sampler, train_ds.labels.numpy(), generator)
        train_loader = make_loader(
            train_ds,
            batch_size=cell.batch_size,
            sampler=sampler,
            seed=cell.seed,
            workers=s.data.workers,
            pin_memory=device.type == "cuda",
            drop_last=True,
        )
        val_loader, test_loader = (
            make_loader(ds, batch_size=s.eval_batch_size, workers=s.data.workers, pin_memory=device.type == "cuda")
            for ds in (val_ds, test_ds)
        )
        loss_fn = make_loss(strategy, counts).to(device)
        eval_loss = nn.CrossEntropyLoss()  # val loss is plain CE, comparable across strategies
        if s.freeze_backbone:
            freeze_all_but_head(model)
        model.train()
        memory_format = torch.channels_last if cell.channels_last else torch.contiguous_format
        model.to(memory_format=memory_format)
        opt = _optimizer(s, [p for p in model.parameters() if p.requires_grad])
        sched = _scheduler(s, opt)
        scaler = torch.amp.GradScaler(device.type, enabled=cell.precision == "fp16")
        es = s.early_stopping
        mode = "min" if es and SELECTION[es.metric].direction == LOWER else "max"
        stopper = EarlyStopper(es.patience if es else s.epochs + 1, mode)
        best_state = None
        best_eval: Evaluation | None = None  # validation (probs, labels, loss) of the best epoch
        taps = dict(
            ctx.epoch_taps
        )  # epoch sweeps: epochs at which another cell's result is taken (bench.execution.epochs)
        curves: list[dict[str, Any]] = []
        step = 0
        stopped_early = False
        for epoch in range(1, s.epochs + 1):
            model.train()
            energy.begin()
            t0 = time.perf_counter()
            seen, loss_sum = 0, 0.0
            for epoch_step, (x, y) in enumerate(train_loader, 1):
                x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
                y = y.to(device, non_blocking=True)
                with autocast(device, cell.precision):
                    logits = model(x)
                loss = loss_fn(logits.float(), y)
                step += 1
                if not torch.isfinite(loss):  # fail the cell now: NaN weights would only waste the epochs left
                    raise Diverged(epoch, epoch_step, float(loss.item()))
                opt.zero_grad(set_to_none=False)  # reuse grad buffers: no re-allocation per step
                scaler.scale(loss).backward()
                if s.grad_clip:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
                scaler.step(opt)
                scaler.update()
                loss_sum += float(loss.detach()) * len(y)
                seen += len(y)
            synchronize(device)
            epoch_time = time.perf_counter() - t0
            energy.end(seen)
            probs, y_val, val_loss = predict(model, val_loader, device, cell.precision, eval_loss)
            pred = probs.argmax(1)
            row = {
                "epoch": epoch,
                "train_loss": loss_sum / max(seen, 1),
                VAL_LOSS.key: val_loss,
                VAL_ACCURACY.key: float((pred == y_val).mean()),
                VAL_MACRO_F1.key: macro_f1(y_val, pred, n_classes),
                "lr": opt.param_groups[0]["lr"],
                "epoch_time_s": epoch_time,
                TRAIN_THROUGHPUT.key: seen / epoch_time,
            }
            curves.append(row)
            value = row[es.metric] if es else row[VAL_MACRO_F1.key]
            if stopper.improved(value):
                best_state = copy.deepcopy(model.state_dict())
                best_eval = (probs, y_val, val_loss)
            stop = stopper.step(epoch, value)
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(value)
            elif sched is not None:
                sched.step()
            if epoch in taps:
                # A shorter run with this seed would have ended here, keeping the best checkpoint so far and
                # evaluating it: its predictions are the ones that checkpoint made at its own epoch.
                tap_dir = taps.pop(epoch)
                assert best_eval is not None  # the first epoch always improves on nothing
                tap_test = _predict_with(model, best_state, test_loader, device, cell.precision, eval_loss)
                tap = self._save(tap_dir, best_state, info, best_eval, tap_test)
                ctx.tap_results[epoch] = {
                    **self._result(
                        cell, s, strategy, scaler, info, curves[:], stopper.best_epoch, False, best_eval, tap_test, tap
                    ),
                    **energy.record(),  # the training steps up to this epoch
                    "trained_in_cell": cell.id,
                    "shared_training": f"one training run of {s.epochs} epochs (cell {cell.id}) served this cell: "
                    f"evaluated after epoch {epoch}, at the best checkpoint up to then",
                }
            if es and stop:
                stopped_early = epoch < s.epochs
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        val_eval = predict(model, val_loader, device, cell.precision, eval_loss)
        test_eval = predict(model, test_loader, device, cell.precision, eval_loss)
        saved = self._save(ctx.artifact_dir, best_state, info, val_eval, test_eval)
        result = self._result(
            cell, s, strategy, scaler, info, curves, stopper.best_epoch, stopped_early, val_eval, test_eval, saved
        )
        result.update(energy.record())
        if s.end_to_end:
            data_path = end_to_end_speed(
                model,
                info["test_samples"],
                info["test_labels"],
                resolution=cell.resolution,
                mean=s.data.mean,
                std=s.data.std,
                batch_size=cell.batch_size,
                device=device,
                precision=cell.precision,
                memory_format=memory_format,
                workers=s.data.workers,
                min_time_s=s.end_to_end_min_time_s,
            )
            result.update(data_path)
            for tap in ctx.tap_results.values():  # the same model and data path: the same figures
                tap.update(data_path)
        if ctx.tap_results:
            result["serves_epochs"] = sorted(ctx.tap_results)
        return result

    @staticmethod
    def _save(
        artifact_dir: Path | None, state, info: dict[str, Any], val_eval: Evaluation, test_eval: Evaluation
    ) -> dict[str, str | None]:
        """Write the evaluated checkpoint and its predictions beside the cell: on test (what is reported)
        and on validation (what selected it), apart; return their names."""
        if artifact_dir is None:
            return {"checkpoint": None, "predictions_file": None, "val_predictions_file": None}
        artifact_dir.mkdir(parents=True, exist_ok=True)
        if state is not None:
            atomic_write(artifact_dir / "best.pt", lambda fh: torch.save(state, fh), binary=True)
        for name, keys, (probs, y, _) in (
            (PREDICTIONS_FILE, info["test_keys"], test_eval),
            (VAL_PREDICTIONS_FILE, info["val_keys"], val_eval),
        ):
            atomic_write_text(artifact_dir / name, _predictions_csv(keys, y, probs, info["classes"]))
        return {
            "checkpoint": "best.pt" if state is not None else None,
            "predictions_file": PREDICTIONS_FILE,
            "val_predictions_file": VAL_PREDICTIONS_FILE,
        }

    @staticmethod
    def _result(
        cell,
        s: TrainSettings,
        strategy: Strategy,
        scaler,
        info: dict[str, Any],
        curves: list[dict[str, Any]],
        best_epoch: int,
        stopped_early: bool,
        val_eval: Evaluation,
        test_eval: Evaluation,
        saved: dict[str, str | None],
    ) -> dict[str, Any]:
        """Every reported classification metric from test; validation's (which selected the checkpoint)
        as `val_*`."""
        probs, y_test, test_loss = test_eval
        val_probs, y_val, val_loss = val_eval
        metrics = classification_metrics(y_test, probs, info["classes"])
        val_pred = val_probs.argmax(axis=1)
        train_img_s = [r[TRAIN_THROUGHPUT.key] for r in curves]
        return {
            **{k: v for k, v in metrics.items() if k not in ("per_class", "confusion_matrix")},
            "evaluated_on": EVALUATED_ON,
            "test_loss": test_loss,
            VAL_LOSS.key: val_loss,
            VAL_ACCURACY.key: float((val_pred == y_val).mean()) if len(y_val) else None,
            VAL_MACRO_F1.key: macro_f1(y_val, val_pred, len(info["classes"])),
            BEST_EPOCH.key: best_epoch,
            EPOCHS_RUN.key: len(curves),
            "stopped_early": stopped_early,
            "train_time_s": float(sum(r["epoch_time_s"] for r in curves)),
            TRAIN_THROUGHPUT.key: float(np.median(train_img_s)),
            "strategy": cell.strategy,
            "sampler": strategy.sampler,
            "loss": strategy.loss,
            "optimizer": s.optimizer,
            "lr": s.lr,
            "batch_size": cell.batch_size,
            "resolution": cell.resolution,
            "precision": cell.precision,
            "memory_format": "channels_last" if cell.channels_last else "contiguous",
            "grad_scaler": scaler.is_enabled(),
            "grad_scale_final": float(scaler.get_scale()) if scaler.is_enabled() else None,
            "dataset": info["dataset"],
            "synthetic_data": info["synthetic"],
            "n_train": info["n_train"],
            "n_val": info["n_val"],
            "n_test": info["n_test"],
            "test_source": info["test_source"],
            "test_class_counts": info["test_class_counts"],
            "bad_images_skipped": info["bad_images_skipped"],
            "bad_images": info["bad_images"],
            "converted_to_rgb": info["converted_to_rgb"],
            "data_notes": _data_notes(info),
            "label_map": info["classes"],
            "train_class_counts": info["train_class_counts"],
            "per_class": metrics["per_class"],
            "confusion_matrix": metrics["confusion_matrix"],
            "curves": curves,
            **saved,
        }
