"""The catalogues: French by default, English from an English locale, the same keys and
placeholders in both, and every key the views use present."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from app.ui.i18n import CATALOGUES, Translator, system_language

UI = Path(__file__).resolve().parents[2] / "app" / "ui"


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_catalogues_have_the_same_keys_and_placeholders():
    fr, en = CATALOGUES["fr"], CATALOGUES["en"]
    assert fr.keys() == en.keys()
    for key, text in fr.items():
        assert placeholders(text) == placeholders(en[key]), key


def test_every_literal_key_used_by_the_ui_exists():
    used = set()
    for source in UI.rglob("*.py"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_.]+)["']""", source.read_text("utf-8")))
    assert "composer.send" in used  # the scan does find the views' keys
    assert used - CATALOGUES["fr"].keys() == set()


@pytest.mark.parametrize(("env", "expected"), [
    ({"LANG": "en_GB.UTF-8"}, "en"),
    ({"LANG": "fr_FR.UTF-8"}, "fr"),
    ({"LANG": "de_DE.UTF-8"}, "fr"),  # no German catalogue: the default
    ({"LC_ALL": "en_US.UTF-8", "LANG": "fr_FR.UTF-8"}, "en"),  # LC_ALL wins
])
def test_language_follows_the_system_locale(monkeypatch, env, expected):
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert system_language() == expected


def test_switching_language_tells_the_views():
    t = Translator("fr")
    switched = []
    t.on_change(lambda: switched.append(t("composer.send")))
    assert t("banner.offline_waiting", count=3) == "Hors ligne — 3 en attente d'envoi"
    t.switch("fr")
    assert switched == []  # no change, no redraw
    t.switch("en")
    assert switched == ["Send"]
    with pytest.raises(ValueError, match="xx"):
        t.switch("xx")
    assert t.language == "en"
    with pytest.raises(KeyError):
        t("no.such.key")
