"""Trae account credentials: what they are, where they are kept, and who refreshes them."""
