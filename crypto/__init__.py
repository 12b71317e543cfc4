"""Sans-I/O end-to-end encryption: MLS (RFC 9420), HPKE, documents, key wrapping."""
