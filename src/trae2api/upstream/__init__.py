"""What trae2api calls: Trae's plaintext HTTP API (protocol doc §2–§7)."""
