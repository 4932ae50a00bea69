"""Privacy protection of personal data: keyed tokens applied before anything is stored."""

from tianluo.protect.tokens import MasterKeyError, Tokenizer, load_key, sm3_hex

__all__ = ["MasterKeyError", "Tokenizer", "load_key", "sm3_hex"]
