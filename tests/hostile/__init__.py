"""Hostile replays of issue 16: each attack against a real server, with the fixed behaviour."""
