"""The new-conversation, room-details and settings screens through the real app in Chromium
(web renderer) and a real relay: a directory search without accents finds an accented name
and opens a direct room; the phone and desktop layouts of the list, a conversation and the
settings. Screenshots are kept in each test's tmp_path."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.ui.app_process import AppProcess, open_app, type_into

SEARCH = "Rechercher un collègue (nom, profession, service)"
PHONE, DESKTOP = (390, 844), (1280, 800)


@pytest.fixture(scope="module")
def helene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    root = tmp_path_factory.mktemp("directory")
    app = AppProcess(root / "helene.log", "--as", "helene",
                     env={"LIAISON_DEMO_DIR": str(root / "demo")})
    try:
        yield app
    finally:
        app.stop()


BLANK_PNG_BYTES = 8_000  # a blank page's PNG is a few kB; any drawn screen is far more


def shoot(page: Page, path: Path) -> None:
    """Save a screenshot once the renderer has drawn the screen (its first frame after a new
    page can still be blank)."""
    for _ in range(20):
        page.wait_for_timeout(500)
        if len(page.screenshot(path=str(path))) > BLANK_PNG_BYTES:
            return
    raise AssertionError(f"nothing drawn for {path.name}")


@pytest.mark.timeout(600)
def test_accentless_search_finds_an_accented_name_and_opens_a_direct_room(
        browser, helene, tmp_path):
    page = open_app(browser, helene, *DESKTOP)
    page.get_by_role("button", name="Nouvelle conversation").click(timeout=60_000)
    type_into(page, SEARCH, "emilie")
    person = page.get_by_role("button", name=re.compile("Émilie Faure"))
    expect(person).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Sage-femme · Maternité")).to_be_visible()
    shoot(page, tmp_path / "search.png")
    person.click()
    expect(page.get_by_text("Sélection : Émilie Faure")).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Créer la conversation").click()

    expect(page.get_by_role("textbox", name="Message")).to_be_visible(timeout=60_000)
    expect(page.get_by_role("button", name=re.compile("Émilie Faure"))).to_be_visible()  # listed
    shoot(page, tmp_path / "direct-room.png")

    page.get_by_role("button", name="Détails de la conversation").click()
    expect(page.get_by_text("Membres (2)")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Hélène Dubois (vous)")).to_be_visible()
    expect(page.get_by_text("Médecin · Propriétaire")).to_be_visible()
    expect(page.get_by_text("Aucun document")).to_be_visible()
    shoot(page, tmp_path / "details.png")


@pytest.mark.timeout(600)
def test_phone_and_desktop_layouts_of_list_conversation_and_settings(browser, helene, tmp_path):
    for name, (width, height) in (("desktop", DESKTOP), ("phone", PHONE)):
        page = open_app(browser, helene, width, height)
        room = page.get_by_role("button", name=re.compile("Garde de nuit"))
        expect(room).to_be_visible(timeout=60_000)
        shoot(page, tmp_path / f"{name}-list.png")
        room.click()
        expect(page.get_by_role("textbox", name="Message")).to_be_visible(timeout=60_000)
        message = re.compile("Relève à 19h")  # a bubble with actions is a named group
        expect(page.get_by_text(message).or_(page.get_by_role("group", name=message)).first
               ).to_be_visible(timeout=30_000)
        if name == "phone":  # one pane at a time: the list is gone
            expect(page.get_by_role("textbox", name="Rechercher une conversation")).to_have_count(0)
        shoot(page, tmp_path / f"{name}-conversation.png")
        settings = page.get_by_role("tab" if name == "phone" else "button",
                                    name=re.compile("Réglages"))
        settings.click()
        expect(page.get_by_text("Mes appareils")).to_be_visible(timeout=30_000)
        expect(page.get_by_text(re.compile(r"Liaison démo \(cet appareil\)"))).to_be_visible(
            timeout=30_000)
        shoot(page, tmp_path / f"{name}-settings.png")
        page.close()


@pytest.mark.timeout(600)
def test_settings_in_english_show_devices_and_a_safety_number(browser, helene, tmp_path):
    page = open_app(browser, helene, *DESKTOP)
    page.get_by_role("button", name=re.compile("Réglages")).click(timeout=60_000)
    page.get_by_role("button", name="English").click(timeout=30_000)
    expect(page.get_by_text("My devices")).to_be_visible(timeout=30_000)
    # the field's start: its label's node spans the pane's width, the field does not
    page.get_by_role("button", name="Contact whose number to check").click(
        position={"x": 40, "y": 24}, timeout=30_000)
    page.get_by_role("button", name="Chloé Bernard").click(timeout=30_000)
    expect(page.get_by_text(re.compile(r"(\d{5} ){11}\d{5}"))).to_be_visible(timeout=30_000)
    expect(page.get_by_text("QR code of the safety number with Chloé Bernard")).to_be_visible()
    shoot(page, tmp_path / "safety-number.png")
