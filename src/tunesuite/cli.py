"""The one argv entry: `tunesuite COMMAND ...` and the task scripts (tasks/*.py) both end here.

COMMANDS names each command once (its usage, what it does, how it runs, its --help); the top-level usage is
generated from it. `-h`/`--help` and `--version` are answered in one place (`_answer`) for every command and script,
before torch loads. `--mode auto` is chosen here, between parsing (config.parse) and config.resolve.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesuite.errors import TunesuiteError, fail
from tunesuite.logs import setup_logging
from tunesuite.registry import SMALL_MODEL, Family, Task, families, find_demo, in_registration_order, modes, task_names
from tunesuite.tasks import get_task, task_key

if TYPE_CHECKING:
    from tunesuite.config.resolve import RunConfig

HELP = ("-h", "--help")


@dataclass(frozen=True)
class Command:
    """One `tunesuite` command: the usage line, the help and the dispatch all read it."""

    name: str
    args: str  # its arguments as the usage shows them ("{tasks}" is filled in with the task names)
    does: str  # one sentence for the usage list
    run: Callable[[list[str]], Any]  # given the arguments after the name
    help: Callable[[list[str]], str] | None = None  # its --help, given the same; None: its usage and `does`

    def help_for(self, args: list[str]) -> str:
        return self.help(args) if self.help else _command_help(self)


class _ArgParser(argparse.ArgumentParser):
    """A command's own flags; -h is answered by the entry, and a bad flag is one `error:` line."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog=prog, add_help=False, allow_abbrev=False)

    def error(self, message: str):  # one `error:` line, not argparse's usage block
        raise TunesuiteError(f"{message} (see {self.prog} --help)")

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """argparse's, with an unknown flag named first, and the nearest known one with it."""
        from tunesuite.config.suggest import did_you_mean

        for token in sys.argv[1:] if args is None else args:
            flag = token.split("=", 1)[0]
            if flag.startswith("--") and flag != "--" and flag not in self._option_string_actions:
                dests = {a.dest for a in self._actions if a.option_strings}
                self.error(f"unknown flag {flag}{did_you_mean(flag, dests)}")
        return super().parse_args(args, namespace)


# --- the run of a command line or of library keywords: parse -> --mode auto -> resolve -> train ---

def configure(task: Task, values: dict[str, Any], command: list[str]) -> RunConfig:
    """The RunConfig of typed values: `--mode auto` chosen first (it may read the data and time a few steps),
    then merged with the defaults. `command` is the run as flags, for the model card."""
    from tunesuite.choose import auto
    from tunesuite.config.resolve import resolve

    setup_logging()  # before auto: its decision is a log line (with no handler yet, Python drops INFO)
    return resolve(task, auto.resolve_auto(task, values), command)


def parse_args(task: Task, argv: list[str]) -> RunConfig:
    """The RunConfig of a command line (flags and an optional `--config FILE.yaml`)."""
    from tunesuite.config.parse import command_values, redact

    return configure(task, command_values(task, argv), redact(argv))


def keyword_config(task: Task, options: dict[str, Any]) -> RunConfig:
    """The RunConfig of library keywords (what tunesuite.finetune and the benchmark pass); None means unset."""
    from tunesuite.config.parse import as_flags, keyword_values

    values = keyword_values(task, options)
    return configure(task, values, as_flags(values))


def run_task(task: Task, argv: list[str]) -> dict[str, Any]:
    """Parse and train; raises TunesuiteError on bad input. Returns the metrics and output_dir."""
    from tunesuite.train.recipe import finetune_config

    return finetune_config(task, parse_args(task, argv))


def _train_or_demo(task: Task | str, argv: list[str]) -> dict[str, Any] | None:
    """A run of `task`; with no arguments at all, the task's offline demo (on the cores idle now)."""
    if argv:  # a mistake in the flags answers now, before the task and torch load
        from tunesuite.config.flag_check import check_argv

        check_argv(task_key(task if isinstance(task, str) else task.name), argv)
    task = get_task(task) if isinstance(task, str) else task
    demo = find_demo(task.name) if not argv else None
    if demo is None:
        return run_task(task, argv)
    from tunesuite.demos.threads import threads_on_idle_cores

    setup_logging()
    with threads_on_idle_cores():
        return demo()


# --- the commands ---

def _first(args: list[str], command: str) -> str:
    """The command's first argument (a TASK or an OUT folder), or one line saying it is missing."""
    if args and not args[0].startswith("-"):
        return args[0]
    usage = f"tunesuite {command} {COMMANDS[command].args}".format(tasks="TASK")
    if COMMANDS[command].args.startswith("OUT"):
        raise TunesuiteError(f"{command} needs the output folder of a finished run first ({usage})")
    raise TunesuiteError(f"{command} needs a TASK first: {', '.join(task_names())} ({usage}; "
                         f"tunesuite {command} TASK --help lists its flags)")


def _task_help(task: Task | str, prog: str, own_flags: Callable[[argparse.ArgumentParser], None] | None = None
               ) -> str:
    """Every flag of a task (cached: see config/help.py), with a command's own flags first."""
    from tunesuite.config.help import help_text

    name = task if isinstance(task, str) else task.name
    loader = (lambda: get_task(name)) if isinstance(task, str) else (lambda: task)
    return help_text(task_key(name), prog, loader, own_flags)


def _help_of_task_command(command: str, own_flags: Callable[[argparse.ArgumentParser], None] | None = None
                          ) -> Callable[[list[str]], str]:
    """`tunesuite COMMAND TASK --help`: the task's flags under the command's name (and the command's own flags
    first); without a TASK, the command's usage."""
    def help_of(args: list[str]) -> str:
        if not args or args[0].startswith("-"):
            return _command_help(COMMANDS[command])
        return _task_help(args[0], f"tunesuite {command} {args[0]}", own_flags)

    return help_of


def _train(args: list[str]) -> None:
    _train_or_demo(_first(args, "train"), args[1:])


def _estimate(args: list[str]) -> None:
    from tunesuite.config.flag_check import check_argv

    check_argv(task_key(_first(args, "estimate")), args[1:])
    from tunesuite.choose.estimate import report  # torch: once the flags are known good

    task = get_task(_first(args, "estimate"))
    setup_logging()
    report(task, parse_args(task, args[1:]))


def _compare_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """compare's own flags; every other flag goes to each run."""
    parser.add_argument("--modes", nargs="+", default=None, metavar="MODE",
                        help="the candidates, registered modes or recipes (default: compare's own set; "
                             "`tunesuite modes` lists the modes)")
    parser.add_argument("--budget", default=None, help="the whole comparison's time (90s, 20m, 1.5h), shared "
                                                       "between the runs")
    parser.add_argument("--folds", type=int, default=None, help="repeat on K folds of the training data")
    parser.add_argument("--seeds", type=int, default=None, help="repeat with N seeds on the same splits")
    shots = getattr(parser, "_option_string_actions", {}).get("--shots")  # the help parser has few-shot's
    if shots is None:
        shots = parser.add_argument("--shots", nargs="+", default=None)
    shots.metavar, shots.help = "K", ("in compare, the data-efficiency curve: labels per class, e.g. 0 8 32 all "
                                      "(0: zero-shot; each K a seeded draw per seed)")


def _compare_help_flags(parser: argparse.ArgumentParser) -> None:
    """compare's flags as the first group of the task's --help; --output-dir is the comparison's folder."""
    group = parser.add_argument_group("compare (the flags below apply to every run)")
    _compare_flags(group)
    for action in group._group_actions:
        action.default = argparse.SUPPRESS  # unset means compare's own choice, as each help says
    parser._action_groups.insert(0, parser._action_groups.pop())
    for action in parser._actions:
        if action.dest == "output_dir":
            action.help = "the comparison's folder (default: runs/compare-TASK); each run in a folder of its own"
            action.default = argparse.SUPPRESS


def _compare(args: list[str]) -> None:
    from tunesuite.config.flag_check import check_argv

    parser = _ArgParser("tunesuite compare")
    _compare_flags(parser)
    parser.add_argument("--output-dir", default=None)
    check_argv(task_key(_first(args, "compare")), args[1:], parser._option_string_actions)
    from tunesuite.choose.compare import compare_values  # torch: once the flags are known good
    from tunesuite.config.parse import argv_values, build_parser

    task = get_task(_first(args, "compare"))
    ours, rest = parser.parse_known_args(args[1:])
    user = argv_values(build_parser(task, explicit_only=True), rest)
    result = compare_values(task.name, user, ours.modes, ours.budget, ours.folds, ours.seeds, ours.output_dir,
                            ours.shots)
    print(result["table"])
    print(f"files: {', '.join(result['files'])}")


def _audit_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """audit's own flags; every other flag goes to each fold's run."""
    parser.add_argument("--folds", type=int, default=None, help="K folds of train + validation (default 5)")


def _audit_help_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("audit (the flags below apply to every fold's run; --mode defaults to frozen)")
    _audit_flags(group)
    for action in group._group_actions:
        action.default = argparse.SUPPRESS  # its help says the default
    parser._action_groups.insert(0, parser._action_groups.pop())


def _audit(args: list[str]) -> None:
    from tunesuite.choose.audit import audit_values
    from tunesuite.config.parse import argv_values, build_parser

    task = get_task(_first(args, "audit"))
    parser = _ArgParser("tunesuite audit")
    _audit_flags(parser)
    parser.add_argument("--output-dir", default=None)
    ours, rest = parser.parse_known_args(args[1:])
    user = argv_values(build_parser(task, explicit_only=True), rest)
    result = audit_values(task.name, user, ours.folds, ours.output_dir)
    print(f"{result['flagged']} of {result['rows']} rows probably mislabelled "
          f"(out-of-fold accuracy {result['out_of_fold_accuracy']:.3f})")
    print(f"files: {', '.join(result['files'])}")


def _eval(args: list[str]) -> None:
    from tunesuite.config.flag_check import check_argv
    from tunesuite.models.run_folder import RunFolder

    out = _first(args, "eval")
    check_argv(task_key(RunFolder(out).task_name), args[1:])  # the run's task's flags, before torch loads
    from tunesuite.train.evaluate import evaluate_run

    evaluate_run(out, args[1:])


def _eval_help(args: list[str]) -> str:
    """The flags of the run's task: each overrides what its run_config.yaml says."""
    if not args or args[0].startswith("-"):
        return _command_help(COMMANDS["eval"])
    from tunesuite.models.run_folder import RunFolder

    return _task_help(RunFolder(args[0]).task, "tunesuite eval OUT")


def _predict_parser() -> _ArgParser:
    parser = _ArgParser("tunesuite predict")
    parser.add_argument("out", help="the output folder of a finished run")
    parser.add_argument("inputs", nargs="*", default=[],
                        help="image or audio files; for text, files with one text per line ('-': standard input)")
    parser.add_argument("--text", action="append", default=[], metavar="TEXT",
                        help="text runs: one text to label, given on the command line (repeat for more)")
    parser.add_argument("--batch-size", type=int, default=32, help="inputs per forward pass (default: 32)")
    return parser


def _predict(args: list[str]) -> None:
    parsed = _predict_parser().parse_args(args)
    _check_inputs(parsed.out, parsed.inputs)
    if not parsed.inputs and not parsed.text:
        raise TunesuiteError("predict needs inputs: files, '-' for standard input, or --text \"a sentence\" "
                             "(see tunesuite predict --help)")
    from tunesuite.models.predictor import load  # torch: only once the arguments are known good

    predictor = load(parsed.out)
    items: list = list(parsed.inputs)
    if predictor.task.data.input_kind == "text":
        items = []
        for name in parsed.inputs:
            text = sys.stdin.read() if name == "-" else _read(name)
            items += [line for line in text.splitlines() if line.strip()]
        items += parsed.text
    elif parsed.text:
        raise TunesuiteError("--text works for text runs only; pass image or audio file paths")
    elif "-" in items:
        raise TunesuiteError("'-' (standard input) works for text runs only; pass image or audio file paths")
    for item, row in zip(items, predictor.predict(items, parsed.batch_size), strict=True):
        print(json.dumps({"input": item, **row}, default=str))


def _check_inputs(out: str, inputs: list[str]) -> None:
    """Fail fast, before the model loads: the run folder and every input file must exist."""
    from tunesuite.models.run_folder import RunFolder

    RunFolder(out).task  # noqa: B018 (read for its check)
    for name in inputs:
        if name != "-" and not Path(name).is_file():
            raise TunesuiteError(f"input file {name} does not exist (pass image/audio files, or for text, files "
                                 "with one text per line; '-' reads standard input)")


def _read(name: str) -> str:
    if not Path(name).is_file():
        raise TunesuiteError(f"input file {name} does not exist (for text, pass files with one text per line)")
    try:
        return Path(name).read_text()
    except UnicodeDecodeError:
        raise TunesuiteError(f"input file {name} is not text; for text runs pass files with one text per line") \
            from None


def _export_parser() -> _ArgParser:
    parser = _ArgParser("tunesuite export")
    parser.add_argument("out", help="the output folder of a finished run")
    parser.add_argument("dest", nargs="?", help="with --format onnx: a new folder for the ONNX model")
    parser.add_argument("--merge", metavar="DEST", help="folder for the merged checkpoint")
    parser.add_argument("--format", choices=["onnx"], help="onnx: the model for onnxruntime in DEST, checked by a "
                        "gate that writes DEST/deploy_report.json and .md")
    parser.add_argument("--quantize", choices=["int8", "int8-per-channel"], help="with --format onnx: an int8 copy "
                        "too (onnxruntime's dynamic quantization; int8-per-channel: a scale per output channel)")
    parser.add_argument("--dataset", help="with --format onnx: labelled data the gate scores (default: the run's "
                        "test split)")
    parser.add_argument("--max-metric-drop", type=float, default=0.01,
                        help="with --format onnx: refuse a model that loses more of the metric (default 0.01)")
    return parser


def _export(args: list[str]) -> None:
    from tunesuite.publish.export import merge

    parsed = _export_parser().parse_args(args)
    if parsed.format == "onnx":
        from tunesuite.publish.onnx_export import export_onnx

        if not parsed.dest or parsed.merge:
            raise TunesuiteError("--format onnx writes to DEST: tunesuite export OUT DEST --format onnx "
                                 "[--quantize int8] (without --merge)")
        print(export_onnx(parsed.out, parsed.dest, parsed.quantize, parsed.dataset, parsed.max_metric_drop))
        return
    if not parsed.merge or parsed.dest or parsed.quantize:
        raise TunesuiteError("the following arguments are required: --merge DEST (a merged checkpoint), or "
                             "DEST --format onnx [--quantize int8] (see tunesuite export --help)")
    print(merge(parsed.out, parsed.merge))


def _convert_parser() -> _ArgParser:
    parser = _ArgParser("tunesuite convert")
    parser.add_argument("src", help="a model folder in another format (today: a CTranslate2 Whisper folder)")
    parser.add_argument("out", help="a new folder for the transformers checkpoint (model, generation config, "
                                    "processor)")
    return parser


def _convert(args: list[str]) -> None:
    from tunesuite.models.convert_whisper import convert

    parsed = _convert_parser().parse_args(args)
    setup_logging()
    print(convert(parsed.src, parsed.out))


def _push_parser() -> _ArgParser:
    parser = _ArgParser("tunesuite push")
    parser.add_argument("out", help="the output folder of a finished run")
    parser.add_argument("--hub-model-id", required=True, metavar="USER/NAME")
    parser.add_argument("--hub-token", default=None, help="default: HF_TOKEN or the stored login")
    parser.add_argument("--hub-private", action="store_true")
    parser.add_argument("--push-merged", action="store_true", help="LoRA: the adapter merged into the base")
    return parser


def _push(args: list[str]) -> None:
    from tunesuite.publish.hub import push

    parsed = _push_parser().parse_args(args)
    print(push(Path(parsed.out), parsed.hub_model_id, parsed.hub_token, parsed.hub_private, parsed.push_merged))


def _report_parser() -> _ArgParser:
    parser = _ArgParser("tunesuite report")
    parser.add_argument("outs", nargs="+", metavar="OUT", help="output folders of finished runs")
    parser.add_argument("--output", default="comparison.html", help="the comparison page of several runs")
    return parser


def _report(args: list[str]) -> None:
    from tunesuite.publish.report import build_report
    from tunesuite.publish.report.compare import build_comparison

    parsed = _report_parser().parse_args(args)
    print(build_report(parsed.outs[0]) if len(parsed.outs) == 1 else build_comparison(parsed.outs, parsed.output))


def modes_table() -> str:
    """The registered modes as a markdown table (tests keep README.md and docs/modes.md equal to it)."""
    def rate(value: float) -> str:
        return f"{value:.0e}".replace("e-0", "e-") if value else "-"  # a mode that trains nothing

    rows = [f"| `{m.name}` | {m.help} | {rate(m.learning_rate_for(0))} / {rate(m.learning_rate)} |"  # small / larger
            for m in in_registration_order(modes())]
    header = f"| `--mode` | what trains | default learning rate (model < {SMALL_MODEL // 10**6}M parameters / larger) |"
    return "\n".join([header, "|---|---|---|", *rows])


def family_cells(family: Family) -> dict[str, str]:
    """Mode name -> what it does on `family`: "ok", "ok (how)" or "refused: why"."""
    return {m.name: m.on_family(family) if m.on_family else "ok" for m in in_registration_order(modes())}


def families_table() -> str:
    """The registered families x the registered modes as a markdown table (docs/families.md; tested too)."""
    rows = sorted(families().values(), key=lambda f: (f.modality, f.model_type))
    rows += [Family(f"(any other {modality} model)", modality) for modality in ("text", "image", "speech")]
    names = list(modes())
    lines = ["| model type | " + " | ".join(f"`{n}`" for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {f.model_type} | " + " | ".join(family_cells(f).values()) + " |" for f in rows]
    return "\n".join(lines)


def _assets(args: list[str]) -> None:
    from tunesuite.assets import print_assets

    print_assets(args)


def _parser_help(make: Callable[[], argparse.ArgumentParser]) -> Callable[[list[str]], str]:
    return lambda args: make().format_help()


COMMANDS: dict[str, Command] = {c.name: c for c in [
    Command("train", "TASK [flags]", "fine-tune (TASK: {tasks}); no flags: the task's offline demo",
            _train, _help_of_task_command("train")),
    Command("compare", "TASK --model M --dataset D [--modes full lora ...] [--budget 20m] [--folds K | --seeds N] "
            "[flags]", "every mode on the same splits: one table and plot (OUT/compare.md, .png)",
            _compare, _help_of_task_command("compare", _compare_help_flags)),
    Command("audit", "TASK --model M --dataset D [--folds 5] [flags]", "probable label errors: out-of-fold "
            "predictions on K folds, ranked by cleanlab (OUT/label_issues.csv, report.html)",
            _audit, _help_of_task_command("audit", _audit_help_flags)),
    Command("estimate", "TASK [flags]", "time a few real steps: predicted time per epoch, total, peak memory",
            _estimate, _help_of_task_command("estimate")),
    Command("eval", "OUT [--dataset D] [flags]", "evaluate a finished run (results in OUT/evaluation/)",
            _eval, _eval_help),
    Command("predict", "OUT INPUT... | OUT --text TEXT", "labels/transcripts as JSON lines: image or audio paths; "
            "for text, files with one text per line ('-' reads standard input) or --text \"a sentence\"",
            _predict, _parser_help(_predict_parser)),
    Command("export", "OUT --merge DEST | OUT DEST --format onnx [--quantize int8]",
            "a plain transformers checkpoint (LoRA merged into the base), or ONNX (+int8) checked by a gate",
            _export, _parser_help(_export_parser)),
    Command("convert", "SRC OUT", "a model folder in another format (CTranslate2 Whisper) as a transformers "
            "checkpoint that from_pretrained and pipeline() load", _convert, _parser_help(_convert_parser)),
    Command("push", "OUT --hub-model-id USER/NAME", "upload a finished run with its model card",
            _push, _parser_help(_push_parser)),
    Command("report", "OUT [OUT2 ...] [--output F]", "rebuild OUT/report.html; several runs: one page comparing "
            "them (F)", _report, _parser_help(_report_parser)),
    Command("modes", "", "the registered modes: what trains, default learning rate (markdown)",
            lambda args: print(modes_table())),
    Command("families", "", "the registered model families x modes: what each mode does (markdown)",
            lambda args: print(families_table())),
    Command("assets", "[NAME]", "where the offline models and data of the demos and quickstarts lie, or how to "
            "install them; NAME: that one's path alone", _assets),
]}
GLOBAL_FLAGS = {"--version": "tunesuite's version and those of transformers, peft and torch",
                "-h, --help": "this list; COMMAND --help: the flags of that command"}


def _usage_lines(call: str, does: str) -> list[str]:
    """`  call    does`, `does` wrapped in a column of its own (a long call puts it on the next line)."""
    column, lines = 37, textwrap.wrap(does, 76)
    if len(call) + 2 >= column:
        return [f"  {call}", *(" " * column + line for line in lines)]
    return [f"  {call}".ljust(column) + lines[0], *(" " * column + line for line in lines[1:])]


def usage() -> str:
    """The top-level usage, generated from COMMANDS."""
    tasks = ", ".join(task_names())
    lines = ["tunesuite COMMAND ...", ""]
    for command in COMMANDS.values():
        lines += _usage_lines(f"{command.name} {command.args}".strip(), command.does.format(tasks=tasks))
    for flag, does in GLOBAL_FLAGS.items():
        lines += _usage_lines(flag, does)
    return "\n".join(lines) + "\n"


def _command_help(command: Command) -> str:
    """A command's usage line and what it does; for one that takes flags, where they are listed."""
    lines = [f"usage: tunesuite {command.name} {command.args}".strip(), "",
             textwrap.fill(command.does.format(tasks=", ".join(task_names())), 100)]
    if "[flags]" in command.args:
        first = command.args.split()[0]
        whose = " of the run's task (each overrides its run_config.yaml)" if first == "OUT" else ""
        lines.append(f"`tunesuite {command.name} {first} --help` lists the flags{whose}.")
    return "\n".join(lines) + "\n"


# --- the entry ---

def version_line() -> str:
    """`tunesuite X.Y.Z (transformers A, peft B, torch C)`, from package metadata (imports none of them)."""
    from tunesuite import __version__

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return f"tunesuite {__version__} ({', '.join(f'{n} {installed(n)}' for n in ('transformers', 'peft', 'torch'))})"


def shutdown_distributed() -> None:
    """Leave the process group in step, so multi-process runs exit 0 instead of aborting at exit."""
    if "torch.distributed" not in sys.modules:  # never started (and --help need not import torch)
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _answer(argv: list[str], help_of: Callable[[], str], run: Callable[[], Any]) -> Any:
    """Where every command and task script runs. `--version` and `-h`/`--help` are answered here, once, for all
    of them (before anything heavy loads). Bad input exits 2 with one `error:` line, Ctrl-C 130 with one
    `interrupted:` line; a multi-process run leaves its process group in step."""
    try:
        if "--version" in argv:
            print(version_line())
            return None
        if any(arg in HELP for arg in argv):
            print(help_of(), end="")
            return None
        return run()
    except (TunesuiteError, KeyboardInterrupt) as e:
        fail(e)
    finally:
        shutdown_distributed()


def _unknown(name: str) -> None:
    raise TunesuiteError(f"unknown command {name!r}; use {', '.join(COMMANDS)} (tunesuite --help)")


def main(argv: list[str] | None = None) -> None:
    """`tunesuite COMMAND ...` (the console script): the command found in COMMANDS, or the usage."""
    argv = sys.argv[1:] if argv is None else argv
    name = argv[0] if argv else "--help"
    command = COMMANDS.get(name)
    if command is None:  # -h, --help, --version, or no such command
        _answer((argv or ["--help"]) if name.startswith("-") else [], usage, lambda: _unknown(name))
        return
    rest = argv[1:]
    _answer(rest, lambda: command.help_for(rest), lambda: command.run(rest))


def task_main(task: Task | str, argv: list[str] | None = None, prog: str | None = None) -> dict[str, Any] | None:
    """A task script's entry (tasks/*.py, tunesuite.main): train `task` (a Task or its name) on the command line's
    flags; no arguments runs the task's offline demo. `--help` lists the task's flags without importing torch."""
    argv = sys.argv[1:] if argv is None else argv
    prog = prog or Path(sys.argv[0]).name
    return _answer(argv, lambda: _task_help(task, prog), lambda: _train_or_demo(task, argv))


if __name__ == "__main__":
    main()
