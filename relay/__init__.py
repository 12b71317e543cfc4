"""Thin relay server: auth, directory, KeyPackages, MLS delivery, encrypted blobs, audit trail."""
