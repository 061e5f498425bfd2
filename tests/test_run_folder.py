"""The one reader of a run folder (models/run_folder.py): what it reads from a finished run, and the one error
line every command that takes OUT gives for a folder that is no run, or whose run_config.yaml is broken."""

from __future__ import annotations

import json

import pytest

import tunesuite
from tunesuite import cli, registry
from tunesuite.errors import TunesuiteError
from tunesuite.models.run_folder import RunFolder

NO_RUN = "error: {out} holds no run_config.yaml: point to a finished tunesuite output folder"
BROKEN = ("error: cannot read {out}/run_config.yaml (not valid YAML: expected ',' or ']', but got '<stream end>' "
          "at line 2, column 1): fix the file, or rerun the training that wrote it")
TASKLESS = "error: {out}/run_config.yaml names no task (a 'task:' line); is it a tunesuite run config?"

# Every command that takes a run folder OUT, as argv (in.txt: an input file that exists)
COMMANDS = {
    "report": ["report", "{out}"],
    "report several": ["report", "{out}", "{out}", "--output", "{tmp}/compare.html"],
    "eval": ["eval", "{out}"],
    "eval with flags": ["eval", "{out}", "--dataset", "{tmp}"],
    "predict": ["predict", "{out}", "{tmp}/in.txt"],
    "export": ["export", "{out}", "--merge", "{tmp}/plain"],
    "push": ["push", "{out}", "--hub-model-id", "me/run"],
    "push merged": ["push", "{out}", "--hub-model-id", "me/run", "--push-merged"],
}


def error_line(capsys, argv: list[str]) -> str:
    """The command's one stderr line (it must exit 2 with exactly one)."""
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture
def folders(tmp_path):
    """A folder that is no run, one whose run_config.yaml is no YAML, one whose names no task."""
    (tmp_path / "in.txt").write_text("goal team coach\n")
    for name, text in (("empty", None), ("broken", "task: [text-classification\n"), ("taskless", "mode: lora\n")):
        (tmp_path / name).mkdir()
        if text is not None:
            (tmp_path / name / "run_config.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("folder", "expected"), [("empty", NO_RUN), ("broken", BROKEN), ("taskless", TASKLESS)])
def test_every_command_gives_the_same_line(command, folder, expected, folders, capsys):
    out = folders / folder
    argv = [arg.format(out=out, tmp=folders) for arg in COMMANDS[command]]
    assert error_line(capsys, argv) == expected.format(out=out)
    assert not (folders / "plain").exists() and not (folders / "compare.html").exists()  # failed before any work


@pytest.mark.parametrize("call", [tunesuite.load, tunesuite.evaluate, lambda out: tunesuite.export(out, out / "x"),
                                  lambda out: tunesuite.push(out, "me/run")])
def test_the_library_raises_the_same_message(call, folders):
    with pytest.raises(TunesuiteError) as info:
        call(folders / "broken")
    assert f"error: {info.value}" == BROKEN.format(out=folders / "broken")


def test_model_pointing_at_a_broken_run_says_the_same(folders, topic_data, capsys):
    """--model OUT with a run_config.yaml: a run to continue, read by the same reader (not silently taken as a
    pretrained checkpoint)."""
    out = folders / "broken"
    argv = ["--model", str(out), "--dataset", str(topic_data), "--output-dir", str(folders / "new")]
    with pytest.raises(SystemExit) as info:
        tunesuite.main("text-classification", argv)
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == BROKEN.format(out=out)


def test_a_broken_results_file_is_named(folders, capsys):
    out = folders / "taskless"
    (out / "run_config.yaml").write_text("task: text-classification\nmode: full\n")
    (out / "all_results.json").write_text('{"test_accuracy": 0.5')
    line = error_line(capsys, ["report", str(out)])
    assert line.startswith(f"error: cannot read {out}/all_results.json (Expecting ")
    assert line.endswith("): fix the file, or rerun the training that wrote it")


def test_reads_a_finished_run(trained, pretrained_bert):
    run = trained("text", "lora")
    folder = RunFolder(run.out)
    assert folder.out == run.out and folder.task_name == "text-classification" and folder.mode == "lora"
    assert folder.task is registry.find_task("text-classification")
    assert folder.config["model"] == str(pretrained_bert) and folder.config["output_dir"] == str(run.out)
    assert folder.results == json.loads((run.out / "all_results.json").read_text())
    assert folder.results["test_accuracy"] == run.result["test_accuracy"]
    labels = json.loads((run.out / "run_summary.json").read_text())["labels"]
    assert folder.labels == labels and sorted(labels) == ["cooking", "music", "sport"]
    assert folder.has_adapter and not folder.has_prompts and not folder.plain
    assert RunFolder.find(run.out).config == folder.config
    assert folder.config is folder.config  # read once


def test_what_a_folder_saved(tmp_path):
    """Labels in id order (JSON's string keys sorted as numbers), unnamed ones as None; our prompts; plain."""
    names = [f"c{i}" for i in range(12)]
    (tmp_path / "config.json").write_text(json.dumps({"id2label": {str(i): n for i, n in enumerate(names)}}))
    folder = RunFolder(tmp_path)
    assert folder.labels == names and folder.plain and not folder.has_adapter
    (tmp_path / "config.json").write_text(json.dumps({"id2label": {"0": "LABEL_0", "1": "LABEL_1"},
                                                      "tunesuite_prompt": {"kind": "prefix"}}))
    folder = RunFolder(tmp_path)
    assert folder.labels is None and folder.has_prompts and not folder.plain
    assert RunFolder(tmp_path).results == {} and RunFolder.find(tmp_path) is None  # no run_config.yaml: no run
    assert RunFolder.find(None) is None and RunFolder.find("bert-base-uncased") is None  # a Hub id


def test_an_unregistered_task_is_named(tmp_path):
    (tmp_path / "run_config.yaml").write_text("task: poetry\n")
    with pytest.raises(TunesuiteError, match=r"run_config.yaml names the task 'poetry', which is not registered"):
        _ = RunFolder(tmp_path).task
