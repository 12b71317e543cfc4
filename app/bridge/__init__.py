"""HL7 v2 admission bridge: a headless client of its own, built on app.client."""
