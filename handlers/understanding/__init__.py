"""Understanding patients' words: ``understand(text, today) -> Understanding(intent, slots, ...)``.

Offline, table-driven, in English, German, Spanish and Russian. Imports nothing of Telegram; the words live in
``handlers/understanding/data/*.toml``. See :mod:`handlers.understanding.understand` for the contract.
"""

from handlers.understanding.understand import INTENTS, SLOT_KEYS, Understanding, understand

__all__ = ["INTENTS", "SLOT_KEYS", "Understanding", "understand"]
