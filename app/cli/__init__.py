"""Command-line client built on the app.client engine."""
