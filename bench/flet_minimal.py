"""The smallest Flet web app: one button. ui_bench.py starts it like the real app, to measure
what Flet's web renderer and Chromium alone take on this machine (the floor under the app's
startup figure)."""

from __future__ import annotations

import sys

import flet as ft


def main(page: ft.Page) -> None:
    page.add(ft.Button("Liaison"))


if __name__ == "__main__":
    ft.run(main, view=ft.AppView.WEB_BROWSER, host="127.0.0.1", port=int(sys.argv[1]),
           no_cdn=True)
