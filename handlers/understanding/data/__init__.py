"""Lexicon data files (TOML) for handlers.understanding; a package so installs ship them."""
