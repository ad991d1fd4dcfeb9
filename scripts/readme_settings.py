"""Rewrite README.rst's settings table from audiojobs/config.py (run after adding a setting)."""

from __future__ import annotations

from pathlib import Path

from audiojobs.config import setting_table

README = Path(__file__).resolve().parent.parent / "README.rst"


def table() -> str:
    rows = [(f"``{name}``", f"``{default}``" if default else "(empty)", comment)
            for name, default, comment in setting_table()]
    widths = [max(len(r[i]) for r in [*rows, ("Setting", "Default", "Meaning")]) for i in range(3)]
    rule = " ".join("=" * w for w in widths)

    def line(cells: tuple[str, str, str]) -> str:
        return " ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([rule, line(("Setting", "Default", "Meaning")), rule, *map(line, rows), rule])


def main() -> None:
    text = README.read_text()
    start = text.index("Lists of directories are separated by ``:`` like ``PATH``.\n\n") + len(
        "Lists of directories are separated by ``:`` like ``PATH``.\n\n")
    end = text.index("\n\nStandard Whisper names accepted")
    README.write_text(text[:start] + table() + text[end:])


if __name__ == "__main__":
    main()
