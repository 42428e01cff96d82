"""Lexicon data files (TOML) for handlers.understanding; a package so packaging ships them."""
