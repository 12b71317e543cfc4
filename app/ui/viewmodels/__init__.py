"""View-models: what each screen shows and does, in plain Python over the client engine.

They import no Flet, so the logic of every screen is tested against a real engine and relay
without a renderer; the views in app/ui only draw them. Engine calls are confined here, so
that new engine methods (documents, edits, directory cache) slot in at one place.
"""
