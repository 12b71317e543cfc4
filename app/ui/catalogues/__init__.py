"""The app's string catalogues, one module per language, with the same keys in each."""
