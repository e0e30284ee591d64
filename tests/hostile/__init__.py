"""Hostile replays of issue 16: every attack against a real server, asserting the fixed behaviour."""
