"""Name -> builder-function registries for blocks and shortcuts.

The registry is the allowlist of what a config may select: configs name entries, they never
carry import paths. Registering a name twice is an error (silent replacement would make the
meaning of a config depend on import order); an unknown name lists the known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from resnet_blocks.errors import RegistryError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry:
    """One registered builder function and what the builder needs to know about it."""

    name: str
    fn: Callable[..., Any]
    preactivation: bool = False
    doc: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    # Counts the block (or shortcut) from shapes alone (resnet_blocks.spec_cost): a function
    # with ``fn``'s signature called with a CostContext as ``ctx``; None: only a build counts it.
    cost: Callable[..., Any] | None = None


class Registry:
    """A named collection of builder functions (one for blocks, one for shortcuts)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, **metadata: Any) -> Callable[[F], F]:
        if not isinstance(name, str) or not name.isidentifier():
            raise RegistryError(f"{self.kind} name: received {name!r}; allowed: a Python identifier such as 'my_block'")
        if name in self._entries:
            raise RegistryError(
                f"{self.kind} {name!r} is already registered (by {_where(self._entries[name].fn)}); choose another name"
            )

        def decorator(fn: F) -> F:
            if not callable(fn):
                raise RegistryError(f"{self.kind} {name!r}: received {fn!r}; allowed: a callable")
            preact = bool(metadata.pop("preactivation", False))
            cost = metadata.pop("cost", None)
            cost = fn if cost is True else (None if cost is False else cost)
            if cost is not None and not callable(cost):
                raise RegistryError(
                    f"{self.kind} {name!r}: cost received {cost!r}; allowed: a callable, true, false or null"
                )
            doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
            self._entries[name] = Entry(name, fn, preact, doc, dict(metadata), cost)
            return fn

        return decorator

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise RegistryError(
                f"unknown {self.kind} {name!r}; registered {self.kind}s: "
                f"{', '.join(self.names())}. A {self.kind} from your own module must be "
                "imported first: list it in model.plugins or expose it in the "
                "'resnet_blocks.plugins' entry-point group"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def unregister(self, name: str) -> None:
        """Remove an entry (for tests and interactive sessions)."""
        self._entries.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def _where(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"


BLOCKS = Registry("block")
SHORTCUTS = Registry("shortcut")


def register_block(name: str, *, preactivation: bool = False, **metadata: Any) -> Callable[[F], F]:
    """Register a residual block builder under ``name``.

    The function is called as ``fn(x, *, width, stride, name, ctx, **block_args)``
    and returns the block's output tensor. ``preactivation=True`` marks blocks that start with
    BN-ReLU (the builder then adds the final BN-ReLU before pooling and leaves the stem
    without one). Use ``ctx`` helpers (``ctx.conv``, ``ctx.norm``, ``ctx.relu``,
    ``ctx.shortcut``) so padding, naming and data format stay consistent.

    ``cost=True``: a block whose body uses only those helpers is also counted from the spec,
    without a model (the function runs on a :class:`~resnet_blocks.spec_cost.CostContext`);
    or a function of the same signature that counts it. Without one, the block's cost comes
    from a build (sweeps then build each new architecture to check its budget).
    """
    return BLOCKS.register(name, preactivation=preactivation, **metadata)


def get_block(name: str) -> Entry:
    """The registered block ``name``; an unknown name lists the known ones."""
    return BLOCKS.get(name)


def available_blocks() -> list[str]:
    """Sorted names of all registered blocks."""
    return BLOCKS.names()


def register_shortcut(name: str, **metadata: Any) -> Callable[[F], F]:
    """Register a shape-changing shortcut builder under ``name``.

    Called as ``fn(x, *, filters, stride, name, ctx, norm)`` where ``norm`` says whether the
    shortcut should end with batch norm (post-activation blocks) or not (pre-activation).
    ``cost``: as for :func:`register_block`.
    """
    return SHORTCUTS.register(name, **metadata)


def get_shortcut(name: str) -> Entry:
    """The registered shortcut ``name``; an unknown name lists the known ones."""
    return SHORTCUTS.get(name)


def available_shortcuts() -> list[str]:
    """Sorted names of all registered shortcuts."""
    return SHORTCUTS.names()
