"""The `tunesuite` command: train, eval, predict, export, push. Imports stay cheap until a command runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tunesuite.errors import TunesuiteError, fail
from tunesuite.registry import SMALL_MODEL, Family, families, modes, task_names

USAGE = """tunesuite COMMAND ...

  train TASK [flags]                 fine-tune (TASK: {tasks});
                                     the flags of tasks/*.py, see `tunesuite train TASK --help`
  compare TASK --model M --dataset D [--modes full lora ...] [--budget 20m] [--folds K | --seeds N] [flags]
                                     every mode on the same splits: one table and plot (OUT/compare.md, .png)
  estimate TASK [flags]              time a few real steps: predicted time per epoch, total, peak memory
  eval OUT [--dataset D] [flags]     evaluate a finished run (results in OUT/evaluation/)
  predict OUT INPUT...               labels/transcripts as JSON lines: image or audio paths; for text,
                                     files with one text per line ('-' reads standard input)
  export OUT --merge DEST            a plain transformers checkpoint (LoRA merged into the base)
  push OUT --hub-model-id USER/NAME  upload a finished run with its model card
  report OUT [OUT2 ...] [--output F] rebuild OUT/report.html; several runs: one page comparing them (F)
  modes                              the registered modes: what trains, default learning rate (markdown)
  families                           the registered model families x modes: what each mode does (markdown)
  --version                          tunesuite's version and those of transformers, peft and torch
"""


class _ArgParser(argparse.ArgumentParser):
    def error(self, message: str):  # one `error:` line, not argparse's usage block
        raise TunesuiteError(f"{message} (see {self.prog} --help)")


def _check_inputs(out: str, inputs: list[str]) -> None:
    """Fail fast, before the model loads: the run folder and every input file must exist."""
    from tunesuite.tasks import saved_task

    saved_task(out)
    for name in inputs:
        if name != "-" and not Path(name).is_file():
            raise TunesuiteError(f"input file {name} does not exist (pass image/audio files, or for text, files "
                                 "with one text per line; '-' reads standard input)")


def _predict(argv: list[str]) -> None:
    from tunesuite.models.predictor import load

    parser = _ArgParser(prog="tunesuite predict")
    parser.add_argument("out")
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    _check_inputs(args.out, args.inputs)
    predictor = load(args.out)
    items: list = list(args.inputs)
    if predictor.task.data.input_kind == "text":
        items = []
        for name in args.inputs:
            text = sys.stdin.read() if name == "-" else _read(name)
            items += [line for line in text.splitlines() if line.strip()]
    elif "-" in items:
        raise TunesuiteError("'-' (standard input) works for text runs only; pass image or audio file paths")
    for item, row in zip(items, predictor.predict(items, args.batch_size), strict=True):
        print(json.dumps({"input": item, **row}, default=str))


def _read(name: str) -> str:
    if not Path(name).is_file():
        raise TunesuiteError(f"input file {name} does not exist (for text, pass files with one text per line)")
    try:
        return Path(name).read_text()
    except UnicodeDecodeError:
        raise TunesuiteError(f"input file {name} is not text; for text runs pass files with one text per line") \
            from None


def _export(argv: list[str]) -> None:
    from tunesuite.publish.export import merge

    parser = _ArgParser(prog="tunesuite export")
    parser.add_argument("out")
    parser.add_argument("--merge", required=True, metavar="DEST", help="folder for the merged checkpoint")
    args = parser.parse_args(argv)
    print(merge(args.out, args.merge))


def _push(argv: list[str]) -> None:
    from tunesuite.publish.hub import push

    parser = _ArgParser(prog="tunesuite push")
    parser.add_argument("out")
    parser.add_argument("--hub-model-id", required=True)
    parser.add_argument("--hub-token", default=None, help="default: HF_TOKEN or the stored login")
    parser.add_argument("--hub-private", action="store_true")
    parser.add_argument("--push-merged", action="store_true")
    args = parser.parse_args(argv)
    print(push(Path(args.out), args.hub_model_id, args.hub_token, args.hub_private, args.push_merged))


def _report(argv: list[str]) -> None:
    from tunesuite.publish.report import build_report
    from tunesuite.publish.report.compare import build_comparison

    parser = _ArgParser(prog="tunesuite report")
    parser.add_argument("outs", nargs="+", metavar="OUT")
    parser.add_argument("--output", default="comparison.html", help="the comparison page of several runs")
    args = parser.parse_args(argv)
    print(build_report(args.outs[0]) if len(args.outs) == 1 else build_comparison(args.outs, args.output))


def _compare(argv: list[str]) -> None:
    from tunesuite.choose.compare import command

    command(argv)


def _estimate(argv: list[str]) -> None:
    from tunesuite.choose.estimate import report
    from tunesuite.runner import parse_args, setup_logging
    from tunesuite.tasks import get_task

    if not argv or argv[0].startswith("-"):
        raise TunesuiteError("estimate needs a TASK first (tunesuite estimate TASK --model M --dataset D ...)")
    setup_logging()
    task = get_task(argv[0])
    report(task, parse_args(task, argv[1:]))


def modes_table() -> str:
    """The registered modes as the README's markdown table (a test keeps the README equal to it)."""
    def rate(value: float) -> str:
        return f"{value:.0e}".replace("e-0", "e-")

    rows = [f"| `{m.name}` | {m.help} | {rate(m.learning_rate_for(0))} / {rate(m.learning_rate)} |"  # small / larger
            for m in modes().values()]
    header = f"| `--mode` | what trains | default learning rate (model < {SMALL_MODEL // 10**6}M parameters / larger) |"
    return "\n".join([header, "|---|---|---|", *rows])


def family_cells(family: Family) -> dict[str, str]:
    """Mode name -> what it does on `family`: "ok", "ok (how)" or "refused: why"."""
    return {m.name: m.on_family(family) if m.on_family else "ok" for m in modes().values()}


def families_table() -> str:
    """The registered families x the registered modes as the README's markdown table (tested like modes_table)."""
    rows = sorted(families().values(), key=lambda f: (f.modality, f.model_type))
    rows += [Family(f"(any other {modality} model)", modality) for modality in ("text", "image", "speech")]
    names = list(modes())
    lines = ["| model type | " + " | ".join(f"`{n}`" for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {f.model_type} | " + " | ".join(family_cells(f).values()) + " |" for f in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """`tunesuite COMMAND ...`: bad input exits 2 with one `error:` line, Ctrl-C 130 with `interrupted:`."""
    argv = sys.argv[1:] if argv is None else argv
    asks_help = argv[1:2] in (["-h"], ["--help"])
    if not argv or argv[0] in ("-h", "--help") or (argv[0] in ("train", "eval") and asks_help):
        print(USAGE.format(tasks=", ".join(task_names())))
        return
    command, rest = argv[0], argv[1:]
    try:
        if command == "--version":
            from tunesuite.runner import version_line

            print(version_line())
        elif command == "train":
            from tunesuite import runner

            if not rest or rest[0].startswith("-"):
                raise TunesuiteError(f"train needs a TASK first: {', '.join(task_names())} "
                                     "(tunesuite train TASK --help lists its flags)")
            runner.main(rest[0], rest[1:], prog=f"tunesuite train {rest[0]}")
        elif command == "eval":
            from tunesuite.train.evaluate import evaluate_run

            if not rest or rest[0].startswith("-"):
                raise TunesuiteError("eval needs the output folder of a finished run first (tunesuite eval OUT ...)")
            evaluate_run(rest[0], rest[1:])
        elif command == "modes":
            print(modes_table())
        elif command == "families":
            print(families_table())
        elif command in ("predict", "export", "push", "report", "compare", "estimate"):
            {"predict": _predict, "export": _export, "push": _push, "report": _report, "compare": _compare,
             "estimate": _estimate}[command](rest)
        else:
            raise TunesuiteError(f"unknown command {command!r}; use train, eval, predict, export, push, report, "
                                 "compare, estimate, modes or families")
    except (TunesuiteError, KeyboardInterrupt) as e:
        fail(e)


if __name__ == "__main__":
    main()
