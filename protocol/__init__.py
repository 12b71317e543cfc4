"""Wire contract: versioned pydantic models of every frame and REST body (app and relay)."""
