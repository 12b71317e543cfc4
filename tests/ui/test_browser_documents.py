"""A document travels through the real app in Chromium (web renderer) and a real relay: Hélène
attaches it in the demo's patient room (the patient banner above), progress bars follow its way
from the browser to the app, then its encryption and upload; Chloé downloads it with a progress
bar and saves it, byte for byte. Screenshots are kept in the test's tmp_path."""

from __future__ import annotations

import os
import re
import secrets

import pytest
from playwright.sync_api import Page, expect

from tests.ui.app_process import click_until, open_app
from tests.ui.test_browser_chat import NOTICE, PATIENT_ROOM, two_apps  # noqa: F401 (the fixture)

SIZE = 30 * 1024 * 1024  # big enough for the bars to be seen, under the relay's blob limit
# Every progress text the accessibility tree showed: Flutter draws each step, but a transfer on
# loopback can run between two of Playwright's polls (screenshots stall them).
_RECORD = """() => {
  window.progressSeen = [];
  const step = /(Préparation du|Chiffrement du|Chiffrement et envoi du|Téléchargement du) \
document…( \\d+ %)?/g;
  new MutationObserver(() => {
    for (const node of document.querySelectorAll('flt-semantics')) {
      const text = (node.getAttribute('aria-label') || '') + ' ' + (node.textContent || '');
      for (const m of text.matchAll(step)) {
        if (!window.progressSeen.includes(m[0])) window.progressSeen.push(m[0]);
      }
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true,
                             attributes: true});
}"""


def record_progress(page: Page) -> None:
    page.evaluate(_RECORD)


def steps_between(page: Page, text: str) -> list[int]:
    """The percentages strictly between 0 and 100 shown after ``text`` (a moving bar)."""
    seen: list[str] = page.evaluate("() => window.progressSeen")
    percents = [int(step.removeprefix(text).removesuffix(" %")) for step in seen
                if step.startswith(text) and step.endswith(" %")]
    return [p for p in percents if 0 < p < 100]


@pytest.mark.timeout(600)
def test_a_document_is_sent_and_received_with_progress_bars(browser, two_apps, tmp_path):  # noqa: F811
    helene_app, chloe_app = two_apps
    name = f"echo-coeur-{secrets.token_hex(3)}.pdf"
    document = tmp_path / name
    document.write_bytes(b"%PDF-1.7\n" + os.urandom(SIZE))

    helene = open_app(browser, helene_app)
    record_progress(helene)
    helene.get_by_role("button", name=re.compile(PATIENT_ROOM)).click(timeout=60_000)
    banner = helene.get_by_text(re.compile(
        r"DURAND Jean · né\(e\) le 02/03/1948 · INS 148037512345678 · identité de test"
        r" · Cardiologie, lit 12"))
    expect(banner).to_be_visible(timeout=30_000)

    with helene.expect_file_chooser(timeout=30_000) as chooser:
        helene.get_by_role("button", name="Joindre un document").click()
    chooser.value.set_files(str(document))
    # From the browser to the app, then encrypted and uploaded to the relay: a bar for each.
    preparing = helene.get_by_text(re.compile(r"Préparation du document… \d+ %"))
    expect(preparing).to_be_visible(timeout=60_000)
    helene.screenshot(path=str(tmp_path / "helene-preparing.png"))
    expect(helene.get_by_role("button", name=f"Télécharger {name}")).to_be_visible(
        timeout=120_000)
    sending = helene.get_by_text(re.compile(r"Chiffrement (du|et envoi du) document"))
    expect(sending).to_have_count(0)  # sent: no bar left
    assert steps_between(helene, "Chiffrement et envoi du document… ")
    helene.screenshot(path=str(tmp_path / "helene-sent.png"))

    chloe = open_app(browser, chloe_app)
    record_progress(chloe)
    # Once the document has arrived (the room's row shows it), any notice is about the room.
    chloe.get_by_role("button", name=re.compile(f"{PATIENT_ROOM}.*{re.escape(name)}")).click(
        timeout=60_000)
    expect(chloe.get_by_text(re.compile(r"INS 148037512345678"))).to_be_visible(timeout=30_000)
    # The notice of the room's new messages closes once the room is open: it covers the
    # composer, and with a screen reader on Flutter would keep it there.
    expect(chloe.get_by_role("group", name=NOTICE)).to_have_count(0, timeout=30_000)
    fetch = chloe.get_by_role("button", name=f"Télécharger {name}")
    save = chloe.get_by_role("button", name=f"Enregistrer {name}")
    downloading = chloe.get_by_text(re.compile("Téléchargement du document"))
    click_until(fetch, lambda: expect(downloading.or_(save).first).to_be_visible(timeout=30_000))
    expect(save).to_be_visible(timeout=120_000)
    assert steps_between(chloe, "Téléchargement du document… ")
    expect(chloe.get_by_text(re.compile("Téléchargement du document"))).to_have_count(0)
    with chloe.expect_download(timeout=60_000) as download:
        save.click()
    saved = tmp_path / "saved.pdf"
    download.value.save_as(saved)
    assert download.value.suggested_filename == name
    assert saved.read_bytes() == document.read_bytes()
    expect(save).to_be_visible(timeout=60_000)  # the window goes on after the download
    chloe.screenshot(path=str(tmp_path / "chloe-saved.png"))
