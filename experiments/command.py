"""``resnet-blocks``: one command for every entry point (installed as a console script).

    resnet-blocks run [overrides]              train one configuration (python -m experiments.run)
    resnet-blocks sweep NAME [overrides]       an Optuna sweep (+sweep=NAME)
    resnet-blocks describe [overrides]         a model's stages, parameters and MACs
    resnet-blocks blocks [--plugins MOD ...]   the registered blocks and shortcuts
    resnet-blocks evaluate MODEL [overrides]   a logged model on a test split
    resnet-blocks finalize --study NAME ...    retrain a study's top trials with seeds, ship the winner
    resnet-blocks report --study NAME ...      a study's HTML report
    resnet-blocks cleanup [--tracking-uri URI]  end runs left RUNNING by dead processes

Each subcommand takes the arguments (and ``--help``) of its ``python -m experiments.*`` module;
Hydra overrides pass through unchanged.
"""

from __future__ import annotations

import sys

COMMANDS = {
    "run": "train one configuration",
    "sweep": "an Optuna sweep: sweep NAME [overrides] (+sweep=NAME)",
    "describe": "a model's per-stage output shapes, parameters and MACs",
    "blocks": "list the registered blocks and shortcuts",
    "evaluate": "evaluate a logged model on a test split",
    "finalize": "retrain a study's top trials with several seeds and ship the winner",
    "report": "write a study's HTML report",
    "cleanup": "mark KILLED the runs left RUNNING by processes that are gone",
}


def _sweep_usage() -> str:
    """The sweeps of conf/sweep/, each with its description's first line (80 columns)."""
    import textwrap
    from pathlib import Path

    lines = ["usage: resnet-blocks sweep NAME [overrides]", "",
             "NAME, a config in conf/sweep/ (its options: resnet-blocks sweep NAME --help):"]  # fmt: skip
    for path in sorted((Path(__file__).resolve().parents[1] / "conf" / "sweep").glob("*.yaml")):
        said = [ln[1:].strip() for ln in path.read_text().splitlines() if ln.startswith("#") and "@package" not in ln]
        first = " ".join(said).split(". ")[0] if said else ""
        lines += textwrap.wrap(f"{path.stem:<20}{first}", 80, subsequent_indent=" " * 20, break_on_hyphens=False)
    return "\n".join(lines)


def _usage() -> str:
    lines = ["usage: resnet-blocks COMMAND [args]", "", "commands:"]
    lines += [f"  {name:<9} {text}" for name, text in COMMANDS.items()]
    lines += ["", "resnet-blocks COMMAND --help shows a command's own arguments."]
    return "\n".join(lines)


def _hydra_app(module: str, args: list[str]) -> int:
    """Run a Hydra app module as ``python -m`` does: Hydra finds ``conf/`` relative to the
    file of ``__main__``, and reads its overrides from ``sys.argv``. Its help names the
    commands as ``resnet-blocks run``, not ``python -m experiments.run``."""
    import runpy

    from experiments import help as app_help

    sys.argv = [module, *args]
    app_help.PROGRAM = "resnet-blocks"
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        app_help.PROGRAM = None
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; allowed: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if command == "run":
        return _hydra_app("experiments.run", rest)
    if command == "sweep":
        if not rest or rest[0].startswith("-") or "=" in rest[0]:
            print(_sweep_usage())
            return 0 if rest and rest[0] in ("-h", "--help") else 2
        return _hydra_app("experiments.run", [f"+sweep={rest[0]}", *rest[1:]])
    if command == "describe":
        return _hydra_app("experiments.describe", rest)
    if command == "blocks":
        from experiments import blocks

        return blocks.main(rest) or 0
    if command == "evaluate":
        from experiments import evaluate

        return evaluate.main(rest)
    if command == "finalize":
        from experiments.sweep import finalize

        return finalize.main(rest)
    if command == "cleanup":
        from experiments import cleanup

        return cleanup.main(rest)
    from experiments.cli import user_errors
    from experiments.sweep import report

    return user_errors(report.main)(rest)


if __name__ == "__main__":
    sys.exit(main())
