"""Documents between the user's files and a conversation: picking one to send, saving a
received one.

On the desktop the file picker gives a path, which the engine reads and encrypts. The web
renderer's browser holds the file instead: Flet uploads it to this process (on loopback only)
into a private temporary directory, where it stays just until the engine has encrypted it. A
document to save goes the other way, decrypted in memory and handed to the browser as a
download, or written by the engine where the user chose on the desktop.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import flet as ft

UPLOAD_SECONDS = 600  # how long a signed upload address stays valid
_SECRET_ENV = "FLET_SECRET_KEY"  # signs Flet's upload addresses
_uploads: Path | None = None


def upload_directory() -> Path:
    """This process's private directory for files the browser uploads, created (0700) on first
    use along with the key signing upload addresses."""
    global _uploads
    if _uploads is None:
        os.environ.setdefault(_SECRET_ENV, secrets.token_urlsafe(32))
        _uploads = Path(tempfile.mkdtemp(prefix="liaison-uploads-"))
    return _uploads


def remove_uploads() -> None:
    """Delete what the browser uploaded and was not sent (the process is ending)."""
    if _uploads is not None:
        shutil.rmtree(_uploads, ignore_errors=True)


class Files:
    """One window's file picker; ``progress`` hears a browser upload's fraction (0..1)."""

    def __init__(self, page: ft.Page, progress: Callable[[float], None]) -> None:
        self._page, self._progress = page, progress
        self._uploaded: dict[str, asyncio.Future[str | None]] = {}
        self._picker = ft.FilePicker(on_upload=self._on_upload)  # registers with the page

    async def pick(self) -> Path | None:
        """A file the user picked, as a path this process can read (None: cancelled). A
        browser upload is the caller's to ``discard`` once sent."""
        files = await self._picker.pick_files(cancel_upload_on_window_blur=False)
        if not files:
            return None
        picked = files[0]
        if picked.path is not None:
            return Path(picked.path)
        relative = f"{secrets.token_hex(8)}/{picked.name}"  # the name travels with the document
        done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._uploaded[picked.name] = done
        await self._picker.upload([ft.FilePickerUploadFile(
            upload_url=self._page.get_upload_url(relative, UPLOAD_SECONDS), id=picked.id)])
        error = await done
        if error is not None:
            raise OSError(error)
        return upload_directory() / relative

    def _on_upload(self, event: ft.FilePickerUploadEvent) -> None:
        self._progress(event.progress or 0.0)
        done = self._uploaded.get(event.file_name)
        if done is None or done.done():
            return
        if event.error:
            done.set_result(event.error)
        elif event.progress is not None and event.progress >= 1.0:
            done.set_result(None)
        else:
            return
        del self._uploaded[event.file_name]

    @staticmethod
    def discard(path: Path) -> None:
        """Delete a browser upload (a desktop file is the user's own and stays)."""
        directory = upload_directory()
        if path.is_relative_to(directory):
            shutil.rmtree(path.parent, ignore_errors=True)

    async def save(self, name: str, export: Callable[[Path], Awaitable[int | None]]) -> bool:
        """Let the user keep a document: ``export(path)`` decrypts it there (None: it could
        not). On the desktop to where the user chooses; in the browser as a download,
        decrypted in a private temporary file read back and deleted at once. False if the
        user cancelled or the export failed."""
        if not self._page.web:
            chosen = await self._picker.save_file(file_name=name)
            return bool(chosen) and await export(Path(chosen)) is not None
        with tempfile.TemporaryDirectory(prefix="liaison-export-") as private:
            path = Path(private) / "document"
            if await export(path) is None:
                return False
            data = path.read_bytes()
        await self._picker.save_file(file_name=name, src_bytes=data)
        return True
