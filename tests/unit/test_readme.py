"""README.rst is what a newcomer follows: it must render without a docutils warning."""

from __future__ import annotations

from pathlib import Path

import docutils.core
import docutils.utils


def test_readme_renders_cleanly() -> None:
    text = (Path(__file__).resolve().parents[2] / "README.rst").read_text()
    docutils.core.publish_string(text, writer="null",
                                 settings_overrides={"report_level": 2, "halt_level": 2})
