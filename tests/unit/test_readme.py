"""The README documents every setting the service reads."""

from __future__ import annotations

from pathlib import Path

from service.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    missing = [
        f"MEMOSERVE_{n.upper()}"
        for n in Settings.model_fields
        if f"`MEMOSERVE_{n.upper()}`" not in README
    ]
    assert not missing, f"add to the README's configuration table: {missing}"


def test_the_two_commands_are_shown() -> None:
    assert "make run" in README and "make test" in README
