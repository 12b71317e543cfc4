"""Liaison client: engine (client), Flet UI (ui), command line (cli) and HL7 v2 bridge (bridge)."""
