"""``easytl backbones``: the backbone registry as a table, without importing torch."""

from __future__ import annotations


def add_parser(command) -> None:
    """The ``backbones`` sub-command (``command`` is build_parser's sub-command factory)."""
    backbones = command("backbones", run, "list the backbone registry (model zoo)",
                        "Backbones by name, with parameters, ImageNet top-1, input size, where the "
                        "weights come from and whether they are available offline here.",
                        ["easytl backbones", "easytl backbones --format markdown"])
    backbones.add_argument("--format", default="table", choices=["table", "markdown"])


def run(args) -> int:
    from ..models.zoo import BACKBONE_TABLE_HEADER, backbone_table, list_backbones  # no torch

    table = [BACKBONE_TABLE_HEADER] + backbone_table(list_backbones())
    if args.format == "markdown":
        args.emit("| " + " | ".join(table[0]) + " |")
        args.emit("|" + "---|" * len(table[0]))
        for row in table[1:]:
            args.emit("| " + " | ".join(row) + " |")
        return 0
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        args.emit("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0
