"""python -m experiments.blocks lists every registered block and shortcut with its arguments."""

from experiments.blocks import listing, main
from resnet_blocks import available_blocks, available_shortcuts


def test_listing_names_every_block_and_shortcut_with_arguments():
    text = listing()
    for name in available_blocks() + available_shortcuts():
        assert name in text
    bottleneck = next(line for line in text.splitlines() if line.startswith("bottleneck "))
    assert "pre" in bottleneck and "expansion=4" in bottleneck
    regular_v1 = next(line for line in text.splitlines() if line.startswith("regular_v1 "))
    assert "post" in regular_v1


def test_listing_loads_plugins(capsys):
    main(["--plugins", "examples.se_block"])
    out = capsys.readouterr().out
    assert "se_regular" in out and "reduction=4" in out
