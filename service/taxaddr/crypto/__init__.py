"""Key custody and envelope encryption. Primitives come from ``cryptography`` only."""
