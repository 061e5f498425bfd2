"""The learning curves mark every epoch with a line, but label at most a few: 30 labels overlapped into a smear."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from tunesuite.publish.report.curves import MAX_EPOCH_LABELS, _epoch_marks  # noqa: E402


@pytest.mark.parametrize("epochs, labels", [(3, ["epoch 1", "epoch 2", "epoch 3"]), (30, None)])
def test_every_epoch_has_a_line_and_few_have_a_label(epochs, labels):
    history = [{"step": 4 * e, "epoch": float(e)} for e in range(1, epochs + 1)]
    figure, ax = plt.subplots()
    try:
        _epoch_marks(ax, history)
        texts = [t.get_text() for t in ax.texts]
        assert len(ax.lines) == epochs
        assert texts == labels if labels else (1 < len(texts) <= MAX_EPOCH_LABELS and texts[0] == "epoch 1")
    finally:
        plt.close(figure)
