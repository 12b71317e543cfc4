"""Two demo users chat through the real app in Chromium (web renderer) and a real relay:
the sender sees the message read, and an urgent message acknowledged; then English and the
phone layout.
Screenshots are kept in the test's tmp_path."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.ui.app_process import AppProcess, click_until, open_app, type_into

PATIENT_ROOM = "DURAND Jean"
NOTICE = re.compile(r"\d+ nouveau\(x\) message\(s\)")  # how many, never what or who


@pytest.fixture
def two_apps(tmp_path: Path) -> Iterator[tuple[AppProcess, AppProcess]]:
    env = {"LIAISON_DEMO_DIR": str(tmp_path / "demo")}
    helene = AppProcess(tmp_path / "helene.log", "--as", "helene", env=env)  # seeds the demo
    try:
        chloe = AppProcess(tmp_path / "chloe.log", "--as", "chloe", env=env)
        try:
            yield helene, chloe
        finally:
            chloe.stop()
    finally:
        helene.stop()


@pytest.mark.timeout(600)
def test_two_users_exchange_a_message_and_see_it_read(browser, two_apps, tmp_path):
    helene_app, chloe_app = two_apps
    chloe = open_app(browser, chloe_app)
    # Once the room's last message has arrived (its row shows it), any notice is about it.
    chloe.get_by_role("button", name=re.compile(f"{PATIENT_ROOM}.*Kaliémie")).click(
        timeout=60_000)
    expect(chloe.get_by_role("textbox", name="Message")).to_be_visible(timeout=30_000)
    # The notice of the room's messages closes with the room open (it covers the composer).
    expect(chloe.get_by_role("group", name=NOTICE)).to_have_count(0, timeout=30_000)

    # The urgent message Hélène wrote while seeding waits for Chloé's acknowledgement.
    acknowledge = chloe.get_by_role("button", name="Confirmer la prise en compte")
    click_until(acknowledge, lambda: expect(acknowledge).to_have_count(0, timeout=20_000))

    type_into(chloe, "Message", "ECG fait, pas de trouble du rythme.")
    chloe.get_by_role("button", name="Envoyer").click()
    composer = chloe.get_by_role("textbox", name="Message")
    expect(composer).to_have_value("", timeout=60_000)  # sent: the composer is ready again

    helene = open_app(browser, helene_app)
    helene.get_by_role("button", name=re.compile(PATIENT_ROOM)).click(timeout=60_000)
    expect(helene.get_by_role("textbox", name="Message")).to_be_visible(timeout=30_000)
    # Chloé's bubble: her name and profession above her text.
    expect(helene.get_by_text(re.compile(
        r"Chloé Bernard · Infirmier·ère\s+ECG fait, pas de trouble du rythme\."))).to_be_visible(
        timeout=60_000)
    # Hélène's own urgent message shows Chloé's acknowledgement.
    expect(helene.get_by_text(re.compile(r"\d\d:\d\d · Confirmé"))).to_be_visible(
        timeout=60_000)
    expect(helene.get_by_role("textbox", name="Message")).to_be_visible()  # still open
    helene.screenshot(path=str(tmp_path / "helene.png"))

    # Hélène switches her window to English.
    helene.get_by_role("button", name=re.compile("Réglages")).click()
    helene.get_by_role("button", name="English").click(timeout=30_000)
    expect(helene.get_by_text("Signed in as Hélène Dubois")).to_be_visible(timeout=30_000)
    expect(helene.get_by_role("button", name="Français")).to_be_enabled()
    helene.screenshot(path=str(tmp_path / "helene-english.png"))

    # Hélène has the room open: Chloé's message shows as read on Chloé's side.
    expect(chloe.get_by_text(re.compile(r"\d\d:\d\d · Lu"))).to_be_visible(timeout=60_000)
    chloe.screenshot(path=str(tmp_path / "chloe.png"))

    # On a phone's width the open conversation takes the whole screen, with a way back.
    chloe.set_viewport_size({"width": 390, "height": 844})
    back = chloe.get_by_role("button", name="Retour aux conversations")
    back.click(timeout=60_000)
    expect(chloe.get_by_role("textbox", name="Rechercher une conversation")).to_be_visible()
    expect(chloe.get_by_role("button", name=re.compile(PATIENT_ROOM))).to_be_visible()
    expect(chloe.get_by_role("textbox", name="Message")).to_have_count(0)
    expect(chloe.get_by_role("tab", name="Réglages")).to_be_visible()  # the navigation bar
    chloe.screenshot(path=str(tmp_path / "chloe-phone.png"))

    # Hélène writes while Chloé looks at the list: a notice tells how many, not what or who.
    helene.get_by_role("button", name=re.compile("Conversations")).click()
    type_into(helene, "Message", "Potassium à 6,1 : rappelez-moi.")
    helene.get_by_role("button", name="Send").click()
    notice = chloe.get_by_role("group", name="1 nouveau(x) message(s)")
    expect(notice).to_be_visible(timeout=60_000)
    # The title counts unread messages: this one and the seeded greeting in Cardiologie.
    expect(chloe).to_have_title("(2) Liaison")
    chloe.screenshot(path=str(tmp_path / "chloe-notice.png"))
    chloe.get_by_role("button", name="Ouvrir").click()
    expect(chloe.get_by_text(re.compile("Potassium à 6,1"))).to_be_visible(timeout=60_000)
    expect(chloe).to_have_title("(1) Liaison", timeout=60_000)  # opened, so read
