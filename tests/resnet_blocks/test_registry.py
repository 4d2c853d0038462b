"""The block and shortcut registries: the allowlist of what a config may name."""

import pytest

from resnet_blocks import (
    RegistryError,
    available_blocks,
    available_shortcuts,
    get_block,
    get_shortcut,
    register_block,
    register_shortcut,
)
from resnet_blocks.registry import BLOCKS, SHORTCUTS, Registry

SHIPPED_BLOCKS = {"regular", "bottleneck", "regular_v1", "bottleneck_v1"}
SHIPPED_SHORTCUTS = {"identity", "projection", "zero_pad", "avg_down"}


def test_shipped_names_are_registered():
    assert SHIPPED_BLOCKS.issubset(available_blocks())
    assert SHIPPED_SHORTCUTS.issubset(available_shortcuts())


def test_available_names_are_sorted():
    assert available_blocks() == sorted(available_blocks())
    assert available_shortcuts() == sorted(available_shortcuts())


@pytest.mark.parametrize(
    ("name", "preactivation"),
    [("regular", True), ("bottleneck", True), ("regular_v1", False), ("bottleneck_v1", False)],
)
def test_shipped_block_entries(name, preactivation):
    entry = get_block(name)
    assert entry.name == name
    assert callable(entry.fn)
    assert entry.preactivation is preactivation
    assert entry.doc  # first docstring line, shown to users


@pytest.mark.parametrize("name", sorted(SHIPPED_SHORTCUTS))
def test_shipped_shortcut_entries(name):
    entry = get_shortcut(name)
    assert entry.name == name and callable(entry.fn) and entry.doc


def test_register_get_and_unregister_block():
    name = "tmp_registry_block"

    @register_block(name, preactivation=True, paper="none")
    def fn(x, *, width, stride, name, ctx):
        """A temporary block."""
        return x

    try:
        assert name in available_blocks()
        assert name in BLOCKS
        entry = get_block(name)
        assert entry.fn is fn
        assert entry.preactivation is True
        assert entry.doc == "A temporary block."
        assert entry.metadata == {"paper": "none"}
    finally:
        BLOCKS.unregister(name)
    assert name not in available_blocks()


def test_register_get_and_unregister_shortcut():
    name = "tmp_registry_shortcut"

    @register_shortcut(name)
    def fn(x, *, filters, stride, name, ctx, norm):
        return x

    try:
        assert name in available_shortcuts()
        assert get_shortcut(name).fn is fn
        assert get_shortcut(name).preactivation is False
    finally:
        SHORTCUTS.unregister(name)
    assert name not in available_shortcuts()


def test_register_returns_the_function_unchanged():
    registry = Registry("thing")

    def fn():
        pass

    assert registry.register("a")(fn) is fn


def test_temp_block_fixture_registers_and_cleans_up(temp_block):
    assert temp_block in available_blocks()
    assert get_block(temp_block).preactivation is True


def test_temp_block_fixture_left_no_trace():
    assert "tmp_test_block" not in available_blocks()


@pytest.mark.parametrize("name", sorted(SHIPPED_BLOCKS))
def test_duplicate_block_name_is_rejected(name):
    before = get_block(name)
    with pytest.raises(RegistryError, match="already registered") as info:
        register_block(name)(lambda x, **kw: x)
    assert name in str(info.value)
    assert "resnet_blocks.blocks" in str(info.value)  # says who registered it first
    assert get_block(name) is before  # the original is not replaced


@pytest.mark.parametrize("name", sorted(SHIPPED_SHORTCUTS))
def test_duplicate_shortcut_name_is_rejected(name):
    before = get_shortcut(name)
    with pytest.raises(RegistryError, match="already registered"):
        register_shortcut(name)(lambda x, **kw: x)
    assert get_shortcut(name) is before


def test_duplicate_of_a_user_block_is_rejected(temp_block):
    with pytest.raises(RegistryError, match="already registered"):
        register_block(temp_block)(lambda x, **kw: x)


def test_unknown_block_lists_every_known_name():
    with pytest.raises(RegistryError) as info:
        get_block("resnext")
    message = str(info.value)
    assert "'resnext'" in message
    for name in available_blocks():
        assert name in message
    assert "model.plugins" in message  # tells the user how to bring their own block in


def test_unknown_shortcut_lists_every_known_name():
    with pytest.raises(RegistryError) as info:
        get_shortcut("conv1x1")
    message = str(info.value)
    assert "'conv1x1'" in message
    for name in available_shortcuts():
        assert name in message


def test_unknown_name_lists_user_blocks_too(temp_block):
    with pytest.raises(RegistryError, match=temp_block):
        get_block("nope")


def test_registry_error_message_is_not_quoted():
    # RegistryError subclasses KeyError, whose str() would add quotes around the message.
    with pytest.raises(RegistryError) as info:
        get_block("nope")
    assert not str(info.value).startswith(('"', "'"))
    assert isinstance(info.value, KeyError)


@pytest.mark.parametrize("name", [None, ["regular"], {"a": 1}])
def test_get_with_non_string_raises_registry_error(name):
    with pytest.raises(RegistryError):
        get_block(name)


@pytest.mark.parametrize("name", ["my-block", "1block", "", "my block", "a.b", 3, None])
@pytest.mark.parametrize("register", [register_block, register_shortcut], ids=["block", "shortcut"])
def test_invalid_names_are_rejected(register, name):
    with pytest.raises(RegistryError, match="identifier"):
        register(name)
    assert name not in available_blocks() and name not in available_shortcuts()


def test_non_callable_is_rejected():
    with pytest.raises(RegistryError, match="callable"):
        register_block("tmp_not_callable")(42)
    assert "tmp_not_callable" not in available_blocks()


def test_unregister_unknown_name_is_a_no_op():
    BLOCKS.unregister("never_registered")
