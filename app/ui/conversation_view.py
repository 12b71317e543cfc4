"""One conversation: the patient banner, bubbles with sender, time and status, and the
composer.

The timeline is a reversed list: its scroll offset counts from the newest message, so the
room opens at the bottom and older pages added at the top leave what the user reads in
place. A bubble's control is kept while its content is unchanged, so that Flet sends only
what changed. The composer's controls live as long as the view, so that a message being
typed survives every redraw of the timeline.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import flet as ft

from app.ui.banner_view import patient_banner, warning_banner
from app.ui.conversation_files import Files
from app.ui.i18n import Translator
from app.ui.viewmodels.conversation import Bubble, Conversation, DaySeparator, Document, Transfer
from app.ui.widgets import clock, icon_button

OLDER_AT_PIXELS = 200  # this close to the top, the page before is read


class ConversationView:
    """``control`` is the pane; ``back`` (phone layout only) returns to the list; ``close``
    stops following the model."""

    def __init__(
        self,
        model: Conversation,
        t: Translator,
        run: Callable[..., object],
        back: Callable[[], None] | None,
        update: Callable[[], None],
        open_room: Callable[[str], None],
    ) -> None:
        self._model, self._t, self._run, self._update = model, t, run, update
        self._open_room = open_room
        self._title = ft.Text(size=18, weight=ft.FontWeight.BOLD, expand=True)
        self._banner = ft.Container()
        self._unreadable = ft.Container()
        self._timeline = ft.ListView(expand=True, spacing=6, reverse=True,
                                     padding=ft.Padding.symmetric(horizontal=8),
                                     on_scroll=self._scrolled, scroll_interval=100)
        self._drawn: dict[object, ft.Control] = {}
        self._error = ft.Text(color=ft.Colors.RED, visible=False)
        self._transfers = ft.Column(spacing=2)
        self._context = ft.Row()  # what the draft replies to, or that it edits
        self._send_button = ft.Button(on_click=lambda _e: run(self._send), icon=ft.Icons.SEND)
        self._attach = ft.Container()
        self._composer = ft.Row()
        self._preparing: float | None = None  # a browser upload's fraction, before encryption
        page = ft.context.page
        self._files = Files(page, self._prepared)
        self._draft, self._urgent = self._new_composer()
        header: list[ft.Control] = [self._title]
        if back is not None:
            header.insert(0, icon_button(ft.Icons.ARROW_BACK, t("conversation.back"),
                                         lambda _e: back()))
        self.control = ft.Column(
            expand=True,
            controls=[
                ft.Row(header),
                self._banner,
                self._unreadable,
                self._timeline,
                self._transfers,
                self._error,
                self._context,
                self._composer,
            ],
        )
        self.redraw()
        self.close = model.observe(lambda: (self.redraw(), update()))

    def _new_composer(self) -> tuple[ft.TextField, ft.Switch]:
        """Fresh composer controls showing the model's draft: Flet 1.0.5 does not send a
        control's return to its default value (empty text, switch off) to the renderer, so
        after a send the controls are replaced rather than reset."""
        t = self._t
        draft = ft.TextField(
            value=self._model.draft, label=t("composer.label"), multiline=True,
            min_lines=1, max_lines=5, expand=True, shift_enter=True, on_change=self._typed,
            on_submit=lambda _e: self._run(self._send),
        )
        urgent = ft.Switch(value=self._model.urgent, label=t("composer.urgent"),
                           on_change=self._toggled)
        attach = icon_button(ft.Icons.ATTACH_FILE, t("composer.attach"),
                             lambda _e: self._run(self._send_document))
        self._composer.controls = [attach, draft, urgent, self._send_button]
        return draft, urgent

    def _typed(self, event: ft.ControlEvent) -> None:
        self._model.draft = event.control.value

    def _toggled(self, event: ft.ControlEvent) -> None:
        self._model.urgent = event.control.value

    def _scrolled(self, event: ft.OnScrollEvent) -> None:
        """Near the top (the end of the reversed list): read the page before."""
        if self._model.has_older and event.pixels >= event.max_scroll_extent - OLDER_AT_PIXELS:
            self._model.load_older()

    async def _send(self) -> None:
        self._model.draft = self._draft.value
        if await self._model.send():
            self._fresh_composer()
            await self._draft.focus()

    def _unreadable_warning(self) -> ft.Control:
        """The warning, and the way out: the room opened again, for every member once an owner
        or moderator did, else for an owner or moderator to do."""
        replacement = self._model.replacement
        if replacement is not None:
            warning = warning_banner(self._t("conversation.replaced", name=replacement.name))
            label, icon = self._t("conversation.open_replacement"), ft.Icons.ARROW_FORWARD
        else:
            warning = warning_banner(self._t("conversation.unreadable"))
            label, icon = self._t("conversation.reopen"), ft.Icons.RESTART_ALT
        if not self._model.can_reopen:
            return warning
        return ft.Column([warning, ft.Button(
            label, icon=icon, on_click=lambda _e: self._run(self._reopen))])

    async def _reopen(self) -> None:
        room_id = await self._model.reopen()
        if room_id is not None:
            self._open_room(room_id)

    def _fresh_composer(self) -> None:
        self._draft, self._urgent = self._new_composer()
        self.redraw()
        self._update()

    def _cancel(self) -> None:
        """Give up a reply or an edit (an edit's text with it)."""
        editing = self._model.editing is not None
        self._model.reply(None)
        if editing:
            self._fresh_composer()

    def _start_edit(self, bubble: Bubble) -> None:
        self._model.edit(bubble.ref)
        self._fresh_composer()

    # -- documents -----------------------------------------------------------------------------
    def _prepared(self, fraction: float) -> None:
        self._preparing = fraction if fraction < 1.0 else None
        self.redraw()
        self._update()

    async def _send_document(self) -> None:
        try:
            path = await self._files.pick()
        except OSError as e:  # the browser's upload to this process failed
            self._preparing = None
            self._model.error = str(e)
            self.redraw()
            self._update()
            return
        if path is None:
            return
        try:
            await self._model.send_document(path)
        finally:
            self._files.discard(path)

    async def _save(self, bubble: Bubble, document: Document) -> None:
        if bubble.ref not in self._model.fetched and not await self._model.fetch(bubble.ref):
            return
        await self._files.save(document.name,
                               lambda path: self._model.save(bubble.ref, Path(path)))

    # -- drawing -------------------------------------------------------------------------------
    def redraw(self) -> None:
        t, model = self._t, self._model
        self._title.value = model.room_name
        patient = model.patient
        self._banner.content = None if patient is None else patient_banner(patient, t)
        self._unreadable.content = self._unreadable_warning() if model.unreadable else None
        self._send_button.content = t("composer.send")
        self._error.value, self._error.visible = model.error or "", model.error is not None
        self._transfers.controls = self._upload_bars()
        self._context.controls = self._draft_context()
        drawn: dict[object, ft.Control] = {}
        for item in model.timeline:
            key = self._key(item)
            drawn[key] = self._drawn.get(key) or self._draw(item)
        self._drawn = drawn
        items = list(reversed(drawn.values()))  # newest first: the list is reversed
        if model.has_older:
            items.append(ft.TextButton(t("conversation.older"),
                                       on_click=lambda _e: model.load_older()))
        self._timeline.controls = items

    def _key(self, item: Bubble | DaySeparator) -> object:
        """What a drawn item depends on: the same key, the same control."""
        if isinstance(item, DaySeparator):
            return item
        return (item, self._model.transfers.get(item.ref), item.ref in self._model.fetched,
                self._t.language)

    def _draw(self, item: Bubble | DaySeparator) -> ft.Control:
        if isinstance(item, DaySeparator):
            return ft.Text(item.day.strftime("%d/%m/%Y"), size=11, text_align=ft.TextAlign.CENTER)
        return self._bubble(item)

    def _upload_bars(self) -> list[ft.Control]:
        uploads = self._model.uploads
        bars = [self._progress("document.uploading", t) for t in uploads]
        if self._model.encrypting > len(uploads):  # no progress to show until the upload
            bars.append(self._progress("document.encrypting", None))
        if self._preparing is not None:
            bars.insert(0, self._progress("document.preparing",
                                          Transfer("upload", int(self._preparing * 100), 100)))
        return bars

    def _progress(self, key: str, transfer: Transfer | None) -> ft.Control:
        """A labelled bar; without a transfer, an indeterminate one."""
        if transfer is None:
            text, value = self._t(key), None
        else:
            text, value = self._t(key, percent=transfer.percent), transfer.fraction
        return ft.Column(spacing=2, controls=[
            ft.Text(text, size=11),
            ft.ProgressBar(value=value, semantics_label=text),
        ])

    def _draft_context(self) -> list[ft.Control]:
        t, model = self._t, self._model
        if model.editing is not None:
            text = t("composer.editing")
        elif model.reply_to is not None:
            parent = next((i for i in model.timeline
                           if isinstance(i, Bubble) and i.ref == model.reply_to), None)
            name = parent.sender_name if parent is not None else ""
            excerpt = (parent.body or "") if parent is not None else ""
            text = t("composer.replying", name=name, excerpt=excerpt[:60])
        else:
            return []
        return [ft.Icon(ft.Icons.REPLY), ft.Text(text, italic=True, expand=True),
                icon_button(ft.Icons.CLOSE, t("composer.cancel"), lambda _e: self._cancel())]

    def _bubble(self, bubble: Bubble) -> ft.Control:
        t = self._t
        sender = t("message.you") if bubble.mine else (
            f"{bubble.sender_name} · {t(f'profession.{bubble.profession}')}")
        lines: list[ft.Control] = [ft.Text(sender, size=11, weight=ft.FontWeight.BOLD)]
        if bubble.urgent:
            lines.append(ft.Row(spacing=4, controls=[
                ft.Icon(ft.Icons.PRIORITY_HIGH, color=ft.Colors.RED, size=16),
                ft.Text(t("message.urgent"), color=ft.Colors.RED, weight=ft.FontWeight.BOLD,
                        size=11),
            ]))
        if bubble.reply is not None:
            excerpt = bubble.reply.excerpt or t(
                "message.quote_missing" if not bubble.reply.sender_name
                else "message.quote_recalled")
            lines.append(ft.Container(
                content=ft.Text(f"{bubble.reply.sender_name} : {excerpt}"
                                if bubble.reply.sender_name else excerpt,
                                size=11, italic=True, max_lines=2),
                border=ft.Border.only(left=ft.BorderSide(3, ft.Colors.BLUE_GREY_300)),
                padding=ft.Padding.only(left=6),
            ))
        if bubble.recalled or bubble.body:
            lines.append(ft.Text(t("message.recalled") if bubble.recalled else bubble.body,
                                 italic=bubble.recalled))
        footer = clock(bubble.time)
        if bubble.edited:
            footer += f" · {t('message.edited')}"
        if bubble.mine:
            footer += f" · {t(f'status.{bubble.status.value}')}"
        lines.append(ft.Text(footer, size=10))
        # The texts as one node of their own, read (and found) as the message; the document
        # and the actions after it.
        parts: list[ft.Control] = [ft.Semantics(container=True,
                                                content=ft.Column(lines, spacing=2, tight=True))]
        if bubble.document is not None and not bubble.recalled:
            parts.append(self._document(bubble, bubble.document))
        parts.append(self._actions(bubble))
        colour = ft.Colors.BLUE_50 if bubble.mine else ft.Colors.GREY_100
        row = ft.Row(
            alignment=ft.MainAxisAlignment.END if bubble.mine else ft.MainAxisAlignment.START,
            controls=[ft.Container(
                content=ft.Column(parts, spacing=2, tight=True),
                bgcolor=ft.Colors.RED_50 if bubble.urgent else colour,
                border=ft.Border.all(2, ft.Colors.RED) if bubble.urgent else None,
                border_radius=12, padding=10, width=420,
            )],
        )
        return ft.Semantics(container=True, content=row)  # read out one message at a time

    def _actions(self, bubble: Bubble) -> ft.Control:
        t, model = self._t, self._model
        actions: list[ft.Control] = []
        if bubble.can_acknowledge:
            actions.append(ft.Button(
                t("message.acknowledge"), icon=ft.Icons.CHECK_CIRCLE,
                on_click=lambda _e: self._run(model.acknowledge, bubble.ref),
            ))
        if not bubble.recalled:
            actions.append(icon_button(ft.Icons.REPLY, t("conversation.reply"),
                                       lambda _e: model.reply(bubble.ref)))
        if bubble.can_change:
            actions.append(icon_button(ft.Icons.EDIT, t("conversation.edit"),
                                       lambda _e: self._start_edit(bubble)))
            actions.append(icon_button(ft.Icons.DELETE_OUTLINE, t("conversation.recall"),
                                       lambda _e: self._run(model.recall, bubble.ref)))
        return ft.Row(actions, spacing=0, wrap=True)

    def _document(self, bubble: Bubble, document: Document) -> ft.Control:
        t = self._t
        label = t("document.label", name=document.name, size=self._size(document.size),
                  type=document.media_type)
        transfer = self._model.transfers.get(bubble.ref)
        tile = ft.Row([
            ft.Icon(ft.Icons.DESCRIPTION),
            ft.Column(expand=True, spacing=0, controls=[
                ft.Text(document.name, weight=ft.FontWeight.W_500),
                ft.Text(f"{self._size(document.size)} · {document.media_type}", size=11),
            ]),
            icon_button(ft.Icons.DOWNLOAD, t("document.save", name=document.name)
                        if bubble.ref in self._model.fetched
                        else t("document.fetch", name=document.name),
                        lambda _e: self._run(self._save, bubble, document)),
        ])
        parts: list[ft.Control] = [ft.Semantics(label=label, content=tile)]
        if transfer is not None and transfer.direction == "download":
            parts.append(self._progress("document.downloading", transfer))
        return ft.Container(content=ft.Column(parts, spacing=4, tight=True),
                            bgcolor=ft.Colors.WHITE, border_radius=8, padding=8)

    def _size(self, size: int) -> str:
        if size < 1024:
            return self._t("size.bytes", value=size)
        if size < 1024 * 1024:
            return self._t("size.kb", value=round(size / 1024))
        return self._t("size.mb", value=f"{size / (1024 * 1024):.1f}")
