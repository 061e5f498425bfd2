"""What a person looks at after a run: learning curves, report.html (rendered in a real browser), the worst
mistakes of every task, `tunesuite report` rebuilding and comparing, and live curves in TensorBoard."""

from __future__ import annotations

import difflib
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import HANG_GUARD_S, cli_error
from PIL import Image

from tunesuite.cli import main
from tunesuite.publish import report
from tunesuite.publish.report import curves
from tunesuite.tasks.mistakes import LIMIT

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
# Every picture decoded (naturalWidth > 0) and every clip's length read: the page's verdict, written into the DOM.
CHECKER = """<script>window.addEventListener('load', async () => {
  const clips = [...document.querySelectorAll('audio')].map(a => a.readyState >= 1 ? a.duration :
    new Promise(done => { a.onloadedmetadata = () => done(a.duration); a.onerror = () => done(-1); a.load(); }));
  const seconds = await Promise.all(clips);
  document.body.dataset.images = [...document.images].map(i => i.complete && i.naturalWidth > 0).join(',');
  document.body.dataset.clips = seconds.join(',');
});</script></body>"""


def _weak(trained, setup):
    """A run that makes mistakes: learning rate 0, so the test split is scored by the untrained head."""
    return trained(setup, "full", learning_rate=0.0, do_predict=True)


def _rows(out: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (out / name).read_text().splitlines() if line.strip()]


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r'src="data:[^"]*"', "", page)))


def render(page: Path, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """The page as headless Chromium builds it: its DOM after load, and the checker's verdicts."""
    if BROWSER is None:
        pytest.skip("no Chromium: install Debian's chromium package (make system-packages) to render report.html")
    checked = tmp_path / "checked.html"
    checked.write_text(page.read_text().replace("</body>", CHECKER, 1))
    dom = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}/prof",
                          "--virtual-time-budget=20000", "--dump-dom", checked.as_uri()],
                         capture_output=True, text=True, timeout=HANG_GUARD_S, check=True).stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    verdict = dict(re.findall(r'data-(images|clips)="([^"]*)"', body))
    return dom, verdict


def test_text_run_draws_curves_and_writes_a_report(trained, tmp_path):
    run = trained("text", "full", num_train_epochs=2, learning_rate=1e-4)
    out, results = run.out, json.loads((run.out / "all_results.json").read_text())
    history = json.loads((out / report.STATE).read_text())["log_history"]
    found = curves.series(history)
    assert {"training loss", "learning rate", "eval_accuracy", "eval_loss"} <= found.keys()
    assert len(found["eval_accuracy"][0]) == 2  # one evaluation per epoch
    with Image.open(out / curves.CURVES) as im:
        assert im.format == "PNG" and im.width > 400
    page = (out / report.REPORT).read_text()
    text = _text(page)
    assert "text-classification" in text and "tunesuite train text-classification" in text
    assert f"{results['trainable_percent']:.2f}%" in text and "train 240, eval 30, test 30" in text
    assert f"{results['test_accuracy']:.4f}" in text and f"{results['eval_macro_f1']:.4f}" in text
    per_class = json.loads((out / "test_per_class.json").read_text())
    assert all(f"{name} {r['precision']:.4f} {r['recall']:.4f} {r['f1']:.4f}" in " ".join(text.split())
               for name, r in per_class.items())
    assert "src=\"http" not in page and "<script" not in page  # nothing from the network, nothing to run
    assert page.count("data:image/png;base64,") == 3  # curves, confusion matrix, reliability (no ROC: 3 classes)
    # the worst mistakes: the misclassified rows of predictions.jsonl, the most confidently wrong first
    predictions, mistakes = _rows(out, "predictions.jsonl"), _rows(out, "test_mistakes.jsonl")
    wrong = [i for i, p in enumerate(predictions) if p["label"] != p["reference"]]
    rows = {m["row"] for m in mistakes}
    assert wrong and (rows == set(wrong) if len(wrong) <= LIMIT else len(rows) == LIMIT and rows <= set(wrong))
    assert [m["loss"] for m in mistakes] == sorted((m["loss"] for m in mistakes), reverse=True)
    for m in mistakes:
        p = predictions[m["row"]]
        assert (m["input"]["text"], m["prediction"], m["reference"]) == (p["text"], p["label"], p["reference"])
        assert m["input"]["text"] in text


def test_text_report_in_a_browser(trained, tmp_path):
    run = trained("text", "full", num_train_epochs=2, learning_rate=1e-4)
    dom, verdict = render(run.out / report.REPORT, tmp_path)
    text = _text(dom)
    for heading in ("Run", "Learning curves", "Metrics", "Per class (test split)", "Confusion matrix (test split)",
                    "Worst mistakes (test split)"):
        assert heading in text
    assert verdict["images"].split(",") == ["true"] * 3  # curves, confusion matrix and reliability diagram decode


@pytest.mark.parametrize("setup", ["image-vit", "audio"])
def test_classifier_mistakes_show_their_inputs(trained, tmp_path, setup):
    out = _weak(trained, setup).out
    predictions, mistakes = _rows(out, "predictions.jsonl"), _rows(out, "test_mistakes.jsonl")
    field = "image" if setup == "image-vit" else "path"
    assert mistakes and all(m["prediction"] != m["reference"] for m in mistakes)
    assert all(m["input"][field] == predictions[m["row"]][field] for m in mistakes)
    dom, verdict = render(out / report.REPORT, tmp_path)
    if setup == "image-vit":  # a thumbnail per mistake, beside the curves, confusion matrix and reliability
        assert verdict["images"].split(",") == ["true"] * (3 + len(mistakes))
    else:  # a player per mistake, its clip readable
        seconds = [float(s) for s in verdict["clips"].split(",")]
        assert len(seconds) == len(mistakes) and all(s > 0 for s in seconds)
        assert verdict["images"].split(",") == ["true"] * 3
    assert all(Path(m["input"][field]).name in _text(dom) for m in mistakes)


def test_speech_report_diffs_reference_and_hypothesis(trained, tmp_path):
    out = trained("speech", "full", learning_rate=0.0, do_predict=False).out
    mistakes = _rows(out, "test_mistakes.jsonl")
    assert mistakes and [m["wer"] for m in mistakes] == sorted((m["wer"] for m in mistakes), reverse=True)
    page = (out / report.REPORT).read_text()
    for m in mistakes:  # the words struck out and put in come from difflib's alignment of the two transcripts
        ref, hyp = m["reference"].split(), m["prediction"].split()
        ops = difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False).get_opcodes()
        for op, i1, i2, j1, j2 in ops:
            if op in ("replace", "delete"):
                assert f"<del>{html.escape(' '.join(ref[i1:i2]))}</del>" in page
            if op in ("replace", "insert"):
                assert f"<ins>{html.escape(' '.join(hyp[j1:j2]))}</ins>" in page
    dom, verdict = render(out / report.REPORT, tmp_path)
    assert "Worst mistakes (test split)" in _text(dom) and "word diff" in _text(dom)
    assert len(verdict["clips"].split(",")) == len(mistakes) and "-1" not in verdict["clips"].split(",")


def test_report_rebuilds_from_the_folder_alone(trained, tmp_path, capsys):
    run = trained("text", "full", num_train_epochs=2, learning_rate=1e-4)
    copy = tmp_path / run.out.name
    keep = ("*.json", "*.jsonl", "*.png", "run_config.yaml")
    copy.mkdir()
    for pattern in keep:
        for file in run.out.glob(pattern):
            shutil.copy2(file, copy / file.name)
    (copy / curves.CURVES).unlink()
    capsys.readouterr()  # what the runs before printed
    main(["report", str(copy)])
    assert capsys.readouterr().out.strip() == str(copy / report.REPORT)
    assert (copy / report.REPORT).read_text() == (run.out / report.REPORT).read_text()


def test_report_compares_runs_side_by_side(trained, tmp_path, capsys):
    runs = [trained("text", "full", num_train_epochs=2, learning_rate=1e-4), trained("text", "lora")]
    dest = tmp_path / "compare.html"
    main(["report", *(str(r.out) for r in runs), "--output", str(dest)])
    page = dest.read_text()
    text = " ".join(_text(page).split())
    for run in runs:
        results = json.loads((run.out / "all_results.json").read_text())
        mode = yaml.safe_load((run.out / "run_config.yaml").read_text())["mode"]
        assert f"{run.out.name} ({mode})" in text
        assert f"{results['trainable_percent']:.2f}%" in text and f"{results['test_accuracy']:.4f}" in text
    assert "accuracy (test)" in text and page.count("data:image/png;base64,") == 1  # the curves overlaid


def test_report_of_a_folder_that_is_no_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["report", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error: ") and "holds no run_config.yaml" in err


@pytest.fixture(scope="module")
def live_run(pretrained_bert, topic_data, tmp_path_factory):
    """A run with checkpoints and TensorBoard, whose end-of-run report is held back: what it drew, it drew
    while training."""
    import tunesuite

    out = tmp_path_factory.mktemp("live") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(report, "write_run_report", lambda *args, **kwargs: None)
        tunesuite.finetune("text-classification", str(pretrained_bert), str(topic_data), mode="full",
                           output_dir=str(out), num_train_epochs=2, learning_rate=1e-3, seed=3, disable_tqdm=True,
                           max_train_samples=96, save_strategy="epoch", report_to="tensorboard")
    return out


def test_curves_are_drawn_at_each_checkpoint(live_run):
    assert sorted(p.name for p in live_run.glob("checkpoint-*")) and not (live_run / report.REPORT).exists()
    with Image.open(live_run / curves.CURVES) as im:
        assert im.format == "PNG"


def test_tensorboard_logs_offline(live_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (logs,) = {p.parent for p in live_run.glob("runs/*/events.out.tfevents.*")}
    events = EventAccumulator(str(logs))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "train/learning_rate", "eval/accuracy"} <= set(tags)
    assert len(events.Scalars("eval/accuracy")) == 2  # one per epoch


@pytest.mark.parametrize("tools", [["wandb"], ["mlflow"]])
def test_other_trackers_pass_through(pretrained_bert, topic_data, tools):
    from tunesuite.cli import parse_args
    from tunesuite.tasks import get_task

    cfg = parse_args(get_task("text-classification"), ["--model", str(pretrained_bert), "--dataset", str(topic_data),
                                                       "--report-to", *tools])
    assert cfg.training.report_to == tools


def test_tensorboard_missing_is_one_line(pretrained_bert, topic_data, tmp_path, monkeypatch, capsys):
    import importlib.util


    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.startswith("tensorboard")
                        else real(name, *a))
    line = cli_error(capsys, "text-classification", ["--model", str(pretrained_bert), "--dataset", str(topic_data),
                                                      "--output-dir", str(tmp_path / "run"), "--report-to",
                                                      "tensorboard"])
    assert "pip install 'tunesuite[tensorboard]'" in line and not (tmp_path / "run").exists()


def _in_memory(folder: Path, dest: Path, kind: str) -> Path:
    """The fixture's files as a saved dataset that holds the images as bytes, or the audio as arrays: no paths."""
    import csv

    import soundfile as sf
    from datasets import Dataset, DatasetDict
    from datasets import Image as ImageFeature

    splits = {}
    for split in ("train", "validation", "test"):
        if kind == "image":
            files = sorted((folder / split).glob("*/*.png"))
            rows = {"image": [{"bytes": f.read_bytes(), "path": None} for f in files],
                    "label": [f.parent.name for f in files]}
            splits[split] = Dataset.from_dict(rows).cast_column("image", ImageFeature())
        else:
            with (folder / f"{split}.csv").open() as f:
                listed = list(csv.DictReader(f))
            clips = [sf.read(folder / r["path"], dtype="float32") for r in listed]
            rows = {"audio": [{"array": a, "sampling_rate": rate} for a, rate in clips],
                    "label": [r["label"] for r in listed]}
            splits[split] = Dataset.from_dict(rows)  # decoded arrays, as datasets hands them out
    DatasetDict(splits).save_to_disk(str(dest))
    return dest


@pytest.mark.parametrize(("task", "model", "data", "kind"), [
    ("image-classification", "tiny_vit", "image_data", "image"),
    ("audio-classification", "tiny_w2v", "pitch_data", "audio")])
def test_inputs_without_files_travel_in_the_mistakes_file(request, tmp_path, task, model, data, kind):
    import tunesuite

    dataset = _in_memory(request.getfixturevalue(data), tmp_path / "saved", kind)
    out = tmp_path / "run"
    tunesuite.finetune(task, str(request.getfixturevalue(model)), str(dataset), mode="full", output_dir=str(out),
                       learning_rate=0.0, num_train_epochs=1, per_device_train_batch_size=8, eval_strategy="no",
                       save_strategy="no", logging_steps=1, disable_tqdm=True)
    mistakes = _rows(out, "test_mistakes.jsonl")
    assert mistakes and all(m["media"].startswith(f"data:{kind}/") for m in mistakes)
    assert not any(Path(str(v)).is_file() for m in mistakes for v in m["input"].values())
    dom, verdict = render(out / report.REPORT, tmp_path)
    if kind == "image":  # curves, confusion matrix, reliability, then a thumbnail per mistake
        assert verdict["images"].split(",") == ["true"] * (3 + len(mistakes))
    else:
        seconds = [float(s) for s in verdict["clips"].split(",")]
        assert len(seconds) == len(mistakes) and all(s > 0 for s in seconds)


def test_a_report_that_cannot_be_written_warns_and_the_run_stands(tmp_path, log):
    """The model and results are saved before the report: a full disk there is a warning, not a failed run."""
    from types import SimpleNamespace

    class FullDisk:
        def save_state(self):
            raise OSError(28, "No space left on device")

    prepared = SimpleNamespace(train=[1, 2], eval=None, test=[3], label_names=None)
    assert report.write_run_report(FullDisk(), None, prepared, tmp_path, "tunesuite train ...") is None
    assert f"`tunesuite report {tmp_path}` writes it later" in log.text


def test_multi_label_and_regression_runs_list_their_worst_rows(tiny_bert, tmp_path):
    import tunesuite

    rows = [{"text": t, "tags": tags, "score": score}
            for t, tags, score in [("goal team", ["sport"], 0.5), ("oven song", ["food", "music"], 1.5)] * 20]
    data = tmp_path / "m.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    common = {"max_steps": 2, "disable_tqdm": True, "validation_split_percentage": 25, "save_strategy": "no"}
    for label, name in (("tags", "multi"), ("score", "regression")):
        tunesuite.finetune("text-classification", str(tiny_bert), str(data), label_column=label,
                           output_dir=str(tmp_path / name), **common)
    given = {r["text"]: r for r in rows}
    multi = _rows(tmp_path / "multi", "eval_mistakes.jsonl")  # no test split: the eval split's
    assert multi and all(sorted(m["reference"]) == sorted(given[m["input"]["text"]]["tags"]) for m in multi)
    assert all(set(m["prediction"]) != set(m["reference"]) for m in multi)
    assert [m["loss"] for m in multi] == sorted((m["loss"] for m in multi), reverse=True)
    regression = _rows(tmp_path / "regression", "eval_mistakes.jsonl")
    assert len(regression) == 10  # every row of the eval split (25% of 40) has an error
    assert all(m["reference"] == given[m["input"]["text"]]["score"] for m in regression)
    assert all(abs(m["abs_error"] - abs(m["prediction"] - m["reference"])) < 1e-3 for m in regression)
    assert [m["abs_error"] for m in regression] == sorted((m["abs_error"] for m in regression), reverse=True)
    page = (tmp_path / "multi" / report.REPORT).read_text()
    assert "Worst mistakes (eval split)" in page and ", ".join(multi[0]["reference"]) in page
