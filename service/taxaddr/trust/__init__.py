"""Who and what is trusted, changed over the API: dual control of the dangerous changes."""
