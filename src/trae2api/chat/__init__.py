"""The chat use case: service, dialect adapters, answer fold, attachments, catalogue."""
