"""Learning curves from the Trainer's log history: the loss (train and eval together, on one scale), learning
rate and every other eval metric, per step (whole epochs marked). One run (OUT/learning_curves.png) or several
overlaid (the comparison page).

While a run trains, CurvesCallback redraws its curves at each checkpoint.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, BinaryIO

from transformers import TrainerCallback

from tunesuite.files import atomic_path

CURVES = "learning_curves.png"
# speed and counts, not how the model does
_NOT_CURVES = ("_runtime", "_per_second", "_preparation_time", "_samples", "_steps")
LOSS = {"training loss": "train", "eval_loss": "eval"}  # series drawn together in one "loss" panel


def _panel(name: str) -> str:
    return "loss" if name in LOSS else name


def series(history: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """Panel title -> (steps, values): `training loss`, `learning rate`, then each eval_* metric."""
    found: dict[str, tuple[list[int], list[float]]] = {}
    for entry in history:
        step = entry.get("step")
        for key, value in entry.items():
            name = {"loss": "training loss", "learning_rate": "learning rate"}.get(key)
            if name is None and key.startswith("eval_") and not key.endswith(_NOT_CURVES):
                name = key
            if name and step is not None and isinstance(value, (int, float)) and math.isfinite(value):
                steps, values = found.setdefault(name, ([], []))
                steps.append(int(step))
                values.append(float(value))
    order = ["training loss", "learning rate"]
    return {k: found[k] for k in order if k in found} | {k: v for k, v in sorted(found.items()) if k not in order}


MAX_EPOCH_LABELS = 6  # per panel; every epoch still gets its line


def _epoch_marks(ax: Any, history: list[dict[str, Any]]) -> None:
    """The end of each whole epoch as a faint vertical line, at the step the history pairs it with."""
    import numpy as np

    pairs = sorted({(e["step"], e["epoch"]) for e in history if "epoch" in e and "step" in e})
    if len(pairs) < 2 or pairs[-1][0] == pairs[0][0]:
        return
    steps, epochs = (np.asarray(x, dtype=float) for x in zip(*pairs, strict=True))
    first, last = max(1, int(np.ceil(epochs[0]))), int(epochs[-1])
    every = max(1, -(-(last - first + 1) // MAX_EPOCH_LABELS))  # 30 labels in one panel overlap into a smear
    for epoch in range(first, last + 1):
        at = float(np.interp(epoch, epochs, steps))
        ax.axvline(at, color="grey", linewidth=0.6, linestyle=":")
        if (epoch - first) % every == 0:
            ax.text(at, 0.98, f"epoch {epoch}", transform=ax.get_xaxis_transform(), fontsize=6, color="grey",
                    ha="right", va="top")


def plot(histories: dict[str, list[dict[str, Any]]], path: Path | BinaryIO, title: str = "") -> bool:
    """Draw each run's curves (one line per run in every panel) to `path`; False when nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {label: series(history) for label, history in histories.items()}
    panels = list(dict.fromkeys(_panel(name) for found in runs.values() for name in found))
    if not panels:
        return False
    last = max(step for found in runs.values() for steps, _ in found.values() for step in steps)
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, panels, strict=False):
        for label, found in runs.items():
            for series_name, (steps, values) in found.items():
                if _panel(series_name) != name:
                    continue
                line = LOSS.get(series_name, "") if len(runs) == 1 else f"{label} {LOSS.get(series_name, '')}".strip()
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=line or label)
        ax.set_xlim(0, max(last, 1) * 1.03)  # one step axis for every panel
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(runs) == 1:
            _epoch_marks(ax, next(iter(histories.values())))
        if name == "loss" or (len(runs) > 1 and name == panels[0]):
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def save_learning_curves(history: list[dict[str, Any]], out: Path) -> Path | None:
    """OUT/learning_curves.png of one run (written atomically); None when the history holds no loss, rate or
    metric."""
    path = Path(out) / CURVES
    with atomic_path(path) as tmp:
        drawn = plot({"run": history}, tmp)
    return path if drawn else None


log = logging.getLogger("tunesuite")


class CurvesCallback(TrainerCallback):
    """Redraws OUT/learning_curves.png at each checkpoint, so a long run can be looked at while it trains."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            try:
                save_learning_curves(state.log_history, Path(args.output_dir))
            except OSError as e:  # a full disk fails the next checkpoint, not this picture
                log.warning("learning curves not drawn: %s", e)
