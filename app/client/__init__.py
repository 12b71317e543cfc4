"""Headless client engine: session, sync, outbox, rooms, files, FHIR; never imports Flet."""
