"""Watching inbox folders for files that scanners and people drop there."""
