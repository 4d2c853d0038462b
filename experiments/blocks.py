"""``python -m experiments.blocks [--plugins mod ...]``: list registered blocks and shortcuts.

Shows each block's extra arguments (``model.block_args``) with their defaults, whether it is
pre-activation, and its one-line description; then the shortcuts.
"""

from __future__ import annotations

import argparse
import inspect

from experiments.cli import user_errors
from resnet_blocks import load_plugins
from resnet_blocks.registry import BLOCKS, SHORTCUTS

_BUILDER_ARGS = {"x", "width", "stride", "name", "ctx", "filters", "norm"}


def _arguments(fn) -> str:
    params = [p for p in inspect.signature(fn).parameters.values() if p.name not in _BUILDER_ARGS]
    parts = []
    for p in params:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            parts.append(f"**{p.name}")
        else:
            parts.append(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}")
    return ", ".join(parts) or "-"


def listing() -> str:
    rows = [("block", "activation", "block_args", "description")]
    for name in BLOCKS.names():
        e = BLOCKS.get(name)
        rows.append((name, "pre" if e.preactivation else "post", _arguments(e.fn), e.doc))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(widths[i]) if i < 3 else c for i, c in enumerate(r)) for r in rows]
    lines.append("")
    lines.append("shortcut (used where a block changes shape; identity wherever shapes match)")
    for name in SHORTCUTS.names():
        lines.append(f"  {name:<12} {SHORTCUTS.get(name).doc}")
    return "\n".join(lines)


@user_errors  # an unknown plugin: one line (exit 2), as in experiments.run
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="List the registered blocks and shortcuts.")
    p.add_argument("--plugins", nargs="*", default=[], help="modules that register more blocks (as model.plugins)")
    args = p.parse_args(argv)
    load_plugins(args.plugins)
    print(listing())


if __name__ == "__main__":
    main()
