"""The README is the newcomer's manual: keep it true."""

from pathlib import Path

from moneytrail.cli import app
from moneytrail.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented():
    missing = [f"MONEYTRAIL_{name.upper()}" for name in Settings.model_fields if f"MONEYTRAIL_{name.upper()}" not in README]
    assert missing == []


def test_every_documented_setting_exists():
    import re

    documented = set(re.findall(r"MONEYTRAIL_([A-Z_]+)", README)) - {"TEST_KAFKA_PORT"}
    assert {d.lower() for d in documented} <= set(Settings.model_fields)


def test_the_two_commands_are_at_the_top():
    head = README[:1500]
    assert "make run" in head and "make test" in head


def test_every_cli_command_is_mentioned():
    names = [c.name or c.callback.__name__ for c in app.registered_commands] + [g.name for g in app.registered_groups]
    assert all(n in README for n in names), names
