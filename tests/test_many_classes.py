"""Many classes (issue 23, mechanism 6): reports whose size does not grow with the class count past a limit (the
whole confusion matrix as a sparse CSV), and a label column with one class per row refused as an ID column."""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import cli_error
from image_fixtures import write_image_folder
from PIL import Image

import tunesuite
from tunesuite import data
from tunesuite.errors import TunesuiteError
from tunesuite.files import leftover_temps
from tunesuite.publish import report
from tunesuite.registry import Prepared
from tunesuite.tasks import classification, metrics, mistakes
from tunesuite.tasks.metrics import VIEW_CLASSES

CLASSES, ROWS = 5000, 20000


def names(count: int) -> list[str]:
    return [f"class-{i:05d}" for i in range(count)]


def predictions(count: int, rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions: 70% right, the rest random, and one planted confusion (17 read as 4242)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, count, rows)
    preds = np.where(rng.random(rows) < 0.7, labels, rng.integers(0, count, rows))
    if count > 4242:
        labels[:60], preds[:60] = 17, 4242
    return labels, preds


def test_reports_of_5000_classes_stay_small_and_keep_every_cell(tmp_path):
    labels, preds = predictions(CLASSES, ROWS)
    table = metrics.write_classification_reports(labels, preds, names(CLASSES), tmp_path, "test")

    # the whole matrix: one row per nonzero cell, exactly the pairs counted, summing to the rows
    with (tmp_path / "test_confusion_matrix.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["true", "predicted", "count"]
    cells = {(t, p): int(c) for t, p, c in rows[1:]}
    assert len(cells) == len(rows) - 1  # no cell twice
    expected = Counter((f"class-{t:05d}", f"class-{p:05d}") for t, p in zip(labels, preds, strict=True))
    assert cells == dict(expected) and sum(cells.values()) == ROWS
    assert len(json.loads((tmp_path / "test_per_class.json").read_text())) == CLASSES  # every class on file

    # the picture: the size of a VIEW_CLASSES-class figure, whatever the class count
    few = tmp_path / "few"
    few.mkdir()
    metrics.write_classification_reports(*predictions(VIEW_CLASSES + 1, 200), names(VIEW_CLASSES + 1), few, "test")
    with Image.open(tmp_path / "test_confusion_matrix.png") as big, \
            Image.open(few / "test_confusion_matrix.png") as small:
        assert big.size == small.size
    # the planted confusion is among the classes shown
    true, pred, counts = metrics.confusion_cells(labels, preds, CLASSES)
    shown = metrics.most_confused(true, pred, counts, CLASSES, VIEW_CLASSES)
    assert len(shown) == VIEW_CLASSES and {17, 4242} <= set(shown.tolist())
    view = metrics.confusion_view(true, pred, counts, shown, CLASSES)  # the shown classes, then all others
    assert view.shape == (VIEW_CLASSES + 1, VIEW_CLASSES + 1) and view.sum() == ROWS
    assert view[list(shown).index(17), list(shown).index(4242)] == expected[("class-00017", "class-04242")]
    assert view[list(shown).index(17)].sum() == (labels == 17).sum()  # a row still holds its class's support

    # the log table: the weakest classes only, and where the rest are
    lines = table.splitlines()
    assert len(lines) == VIEW_CLASSES + 2 and f"of {CLASSES:,}; every class: test_per_class.json" in lines[-1]

    # the page: under 1 MB, at most VIEW_CLASSES classes named, and where the full data is
    (tmp_path / "run_config.yaml").write_text("task: text-classification\nmode: full\n")
    (tmp_path / "all_results.json").write_text(json.dumps({"test_accuracy": 0.7, "test_runtime": 1.0}))
    page = report.build_report(tmp_path).read_text()
    assert len(page.encode()) < 2**20
    assert len(set(re.findall(r"class-\d{5}", page))) <= VIEW_CLASSES
    assert f"The {VIEW_CLASSES} most-confused of {CLASSES:,} classes" in page
    assert "test_confusion_matrix.csv" in page and "test_per_class.json" in page
    assert not leftover_temps(tmp_path)


def test_a_few_classes_are_all_shown(tmp_path):
    labels, preds = predictions(4, 40)
    table = metrics.write_classification_reports(labels, preds, names(4), tmp_path, "eval")
    assert all(n in table for n in names(4)) and len(table.splitlines()) == 5
    (tmp_path / "run_config.yaml").write_text("task: text-classification\n")
    page = report.build_report(tmp_path).read_text()
    assert set(re.findall(r"class-\d{5}", page)) == set(names(4))
    assert "most-confused" not in page


def test_a_failed_figure_write_leaves_no_file_and_no_open_figure(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    def full_disk(self, path, **kwargs):
        Path(path).write_bytes(b"half a png")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    labels, preds = predictions(3, 30)
    with pytest.raises(OSError):
        metrics.write_classification_reports(labels, preds, names(3), tmp_path, "test")
    with pytest.raises(OSError):
        metrics.save_roc_png(np.array([0, 1, 0, 1]), np.array([0.2, 0.7, 0.4, 0.9]), "yes", tmp_path / "roc.png", "t")
    assert not (tmp_path / "test_confusion_matrix.png").exists() and not (tmp_path / "roc.png").exists()
    assert not leftover_temps(tmp_path) and not plt.get_fignums()


def test_mistakes_score_a_wide_head_in_blocks(monkeypatch):
    rng = np.random.default_rng(1)
    logits, labels = rng.normal(size=(23, 7)).astype(np.float32) * 20, rng.integers(0, 7, 23)
    monkeypatch.setattr(metrics, "ROW_BLOCK", 7 * 4)  # 4 rows a block: blocks and a short last one
    predicted, confidence, loss = metrics.predicted_and_loss(logits, labels)
    probs = metrics.softmax(logits)  # the whole softmax, as before
    assert (predicted == probs.argmax(-1)).all()
    assert confidence == pytest.approx(probs.max(-1))
    assert loss == pytest.approx(-np.log(np.clip(probs[np.arange(23), labels], 1e-12, None)))
    prepared = Prepared(processor=None, train=None, eval=None, test=None, model_kwargs={}, label_names=names(7),
                        problem_type=classification.SINGLE)
    records = mistakes.classification(SimpleNamespace(predictions=logits, label_ids=labels), prepared, "test")
    assert [r["row"] for r in records] == sorted(np.flatnonzero(predicted != labels),
                                                   key=lambda i: -loss[i])[:mistakes.LIMIT]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_roc_auc_is_left_out_past_its_class_limit(monkeypatch):
    logits, labels = np.eye(4)[[0, 1, 2, 3, 0, 1]] * 3.0, np.array([0, 1, 2, 3, 1, 0])
    prepared = Prepared(processor=None, train=None, eval=None, test=None, model_kwargs={}, label_names=names(4),
                        problem_type=classification.SINGLE)
    assert "roc_auc" in classification.compute_metrics(prepared)(SimpleNamespace(predictions=logits,
                                                                                 label_ids=labels))
    monkeypatch.setattr(metrics, "ROC_AUC_MAX_CLASSES", 3)
    compute, logger, handler = classification.compute_metrics(prepared), logging.getLogger("tunesuite"), Records()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for _ in range(2):  # two evaluations
            found = compute(SimpleNamespace(predictions=logits, label_ids=labels))
            assert set(found) == {"accuracy", "macro_f1", "ece"}
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    said = [r.getMessage() for r in handler.records if "roc_auc left out" in r.getMessage()]
    assert said == ["roc_auc left out: 4 classes (one-vs-rest AUC is computed up to 3)"]  # once


# --- an ID column as the label ---------------------------------------------------------------------------------

def id_rule(rows: int, classes: int) -> None:
    from datasets import Dataset

    split = Dataset.from_dict({"label": [f"c{i % classes}" for i in range(rows)]})
    data.label_names({"train": split}, "label", "single_label_classification", "t.csv")


def test_the_id_rule_spares_small_few_shot_and_large_label_sets():
    id_rule(10, 10)  # a few-shot set: one example per class, too few rows to judge
    id_rule(data.columns.ID_MIN_ROWS - 1, data.columns.ID_MIN_ROWS - 1)
    id_rule(100, 63)  # as distinct as N classes drawn at random over N rows: a big label set, not an ID
    id_rule(100, 90)
    with pytest.raises(TunesuiteError, match="column 'label' of t.csv has 91 distinct values in 100 rows"):
        id_rule(100, 91)
    with pytest.raises(TunesuiteError, match="looks like an ID"):
        id_rule(data.columns.ID_MIN_ROWS, data.columns.ID_MIN_ROWS)


def test_text_classification_refuses_an_id_column(capsys, tiny_bert, tmp_path):
    path = tmp_path / "data/train.csv"
    path.parent.mkdir()
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([["id", "text", "label"], *([f"r{i}", "goal team", ["sport", "cooking"][i % 2]]
                                                             for i in range(240))])
    line = cli_error(capsys, tunesuite.TEXT_CLASSIFICATION, [
        "--model", str(tiny_bert), "--dataset", str(path), "--output-dir", str(tmp_path / "out"), "--max-steps", "1",
        "--label-column", "id", "--validation-split-percentage", "0", "--eval-strategy", "no"])
    assert line == (f"error: column 'id' of {path} has 240 distinct values in 240 rows, so it looks like an ID, "
                    "not a label; pass --label-column with the column that holds the classes")


def test_image_classification_refuses_an_id_column(capsys, tiny_vit, tmp_path):
    folder = write_image_folder(tmp_path / "images", {"train": 1})
    pictures = sorted(folder.rglob("*.png"))
    manifest = tmp_path / "train.csv"
    with manifest.open("w", newline="") as f:
        csv.writer(f).writerows([["image", "label", "file_id"],
                                 *([str(pictures[i % 3]), pictures[i % 3].parent.name, f"f{i}"] for i in range(60))])
    line = cli_error(capsys, tunesuite.IMAGE_CLASSIFICATION, [
        "--model", str(tiny_vit), "--dataset", str(manifest), "--output-dir", str(tmp_path / "out"), "--max-steps",
        "1", "--label-column", "file_id", "--validation-split-percentage", "0", "--eval-strategy", "no"])
    assert "column 'file_id' of" in line and "60 distinct values in 60 rows" in line and "--label-column" in line


def test_model_card_lists_the_weakest_classes_past_the_view_limit(tmp_path):
    """The card's per-class table is bounded like the page's: the weakest classes, and where every class is."""
    from tunesuite.publish import card

    report = {f"class-{i:05d}": {"precision": 1.0, "recall": 1.0, "f1": 1.0 if i != 77 else 0.1, "support": 3}
              for i in range(VIEW_CLASSES * 10)}
    (tmp_path / "test_per_class.json").write_text(json.dumps(report))
    lines = card._per_class(tmp_path)
    rows = [line for line in lines if line.startswith("| class-")]
    assert len(rows) == VIEW_CLASSES and any("class-00077" in r for r in rows)
    assert f"of {VIEW_CLASSES * 10:,} classes by F1; every class: test_per_class.json" in lines[-1]
