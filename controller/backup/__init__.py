"""Backups of Open WebUI's data (users, chats, uploads, settings) and their restore."""
