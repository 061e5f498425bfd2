"""Whether a classifier's scores mean what they say: expected calibration error, the reliability diagram, and
temperature scaling (one scalar that divides the logits, fitted by minimising the negative log-likelihood).

The temperature lives in the model config (`TEMPERATURE`), so config.json records it and every prediction made
from the saved model (predict, load, predictions.jsonl) divides by it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from tunesuite.tasks.metrics import saved_figure

ECE_BINS = 15  # equal-width confidence bins, as in Guo et al. 2017 ("On Calibration of Modern Neural Networks")
TEMPERATURE = "tunesuite_temperature"  # model config key


def temperature(config: Any) -> float:
    """The config's fitted temperature, 1.0 when none was fitted."""
    return float(getattr(config, TEMPERATURE, None) or 1.0)


def softmax(logits: np.ndarray, temp: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temp
    scaled -= scaled.max(-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(-1, keepdims=True)


def confidence(logits: np.ndarray, temp: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top softmax probability and its class, without keeping the (rows, classes) probabilities:
    the top probability is 1 / sum(exp(logit - top logit)), so 50,000 classes cost one float32 pass."""
    scaled = np.asarray(logits, dtype=np.float32) / np.float32(temp)
    top = scaled.max(-1, keepdims=True)
    return 1.0 / np.exp(scaled - top).sum(-1, dtype=np.float64), scaled.argmax(-1)


def reliability_bins(logits: np.ndarray, labels: np.ndarray, temp: float = 1.0, bins: int = ECE_BINS
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin: mean confidence, accuracy and count (empty bins hold 0)."""
    top, predicted = confidence(logits, temp)
    correct = (predicted == np.asarray(labels).reshape(-1)).astype(float)
    index = np.clip(np.ceil(top * bins).astype(int) - 1, 0, bins - 1)  # bin k holds (k/bins, (k+1)/bins]
    counts = np.bincount(index, minlength=bins).astype(float)
    safe = np.maximum(counts, 1)
    return np.bincount(index, top, bins) / safe, np.bincount(index, correct, bins) / safe, counts


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, temp: float = 1.0,
                               bins: int = ECE_BINS) -> float:
    """Sum over bins of |accuracy - confidence| weighted by the bin's share of the rows, for softmax(logits / temp)."""
    top, accuracy, counts = reliability_bins(logits, labels, temp, bins)
    return float(np.sum(counts * np.abs(accuracy - top)) / max(counts.sum(), 1))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 minimising the cross-entropy of softmax(logits / T) (torch's LBFGS on log T)."""
    x = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels).reshape(-1), dtype=torch.long)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    value = float(log_t.detach().clamp(-5, 5).exp())  # a degenerate split (all right, all one class) stays sane
    return value if np.isfinite(value) else 1.0


def save_reliability_png(logits: np.ndarray, labels: np.ndarray, path: Path, title: str,
                         temp: float | None = None) -> None:
    """The reliability diagram (accuracy against confidence per bin), with the temperature-scaled curve beside
    the raw one when a temperature is given: one figure per split."""
    with saved_figure(path, (4.5, 4.5), title) as ax:
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
        curves = [("raw", 1.0)] + ([(f"T = {temp:.3g}", temp)] if temp else [])
        for name, t in curves:
            top, accuracy, counts = reliability_bins(logits, labels, t)
            kept = counts > 0
            ece = expected_calibration_error(logits, labels, t)
            ax.plot(top[kept], accuracy[kept], marker="o", label=f"{name}: ECE {ece:.3f}")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
        ax.legend(loc="upper left", fontsize="small")
