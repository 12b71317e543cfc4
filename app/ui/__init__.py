"""Flet views and view-models; nothing imports this package."""
