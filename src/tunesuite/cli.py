"""The `tunesuite` command: train, eval, predict, export, push."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import die
from .errors import TunesuiteError

USAGE = """tunesuite COMMAND ...

  train TASK [flags]                 fine-tune (TASK: text-classification, image-classification, asr);
                                     the flags of tasks/*.py, see `tunesuite train TASK --help`
  eval OUT [--dataset D] [flags]     evaluate a finished run (results in OUT/evaluation/)
  predict OUT INPUT...               labels/transcripts as JSON lines: image or audio paths; for text,
                                     files with one text per line ('-' reads standard input)
  export OUT --merge DEST            a plain transformers checkpoint (LoRA merged into the base)
  push OUT --hub-model-id USER/NAME  upload a finished run with its model card
"""


def _predict(argv: list[str]) -> None:
    from .predictor import load

    parser = argparse.ArgumentParser(prog="tunesuite predict")
    parser.add_argument("out")
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    predictor = load(args.out)
    items: list = list(args.inputs)
    if predictor.task.input_kind == "text":
        items = []
        for name in args.inputs:
            text = sys.stdin.read() if name == "-" else _read(name)
            items += [line for line in text.splitlines() if line.strip()]
    else:
        for name in items:
            if not Path(name).is_file():
                raise TunesuiteError(f"input file {name} does not exist")
    for item, row in zip(items, predictor.predict(items, args.batch_size), strict=True):
        print(json.dumps({"input": item, **row}, default=str))


def _read(name: str) -> str:
    if not Path(name).is_file():
        raise TunesuiteError(f"input file {name} does not exist (for text, pass files with one text per line)")
    return Path(name).read_text()


def _export(argv: list[str]) -> None:
    from .export import merge

    parser = argparse.ArgumentParser(prog="tunesuite export")
    parser.add_argument("out")
    parser.add_argument("--merge", required=True, metavar="DEST", help="folder for the merged checkpoint")
    args = parser.parse_args(argv)
    print(merge(args.out, args.merge))


def _push(argv: list[str]) -> None:
    from .hub import push

    parser = argparse.ArgumentParser(prog="tunesuite push")
    parser.add_argument("out")
    parser.add_argument("--hub-model-id", required=True)
    parser.add_argument("--hub-token", default=None, help="default: HF_TOKEN or the stored login")
    parser.add_argument("--hub-private", action="store_true")
    parser.add_argument("--push-merged", action="store_true")
    args = parser.parse_args(argv)
    print(push(Path(args.out), args.hub_model_id, args.hub_token, args.hub_private, args.push_merged))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    try:
        if command == "train":
            from . import runner

            if not rest:
                raise TunesuiteError("train needs a TASK: text-classification, image-classification or asr")
            runner.main(runner.get_task(rest[0]), rest[1:])
        elif command == "eval":
            from .evaluation import evaluate_run

            if not rest:
                raise TunesuiteError("eval needs the output folder of a finished run")
            evaluate_run(rest[0], rest[1:])
        elif command in ("predict", "export", "push"):
            {"predict": _predict, "export": _export, "push": _push}[command](rest)
        else:
            raise TunesuiteError(f"unknown command {command!r}; use train, eval, predict, export or push")
    except TunesuiteError as e:
        die(str(e))


if __name__ == "__main__":
    main()
