"""Privacy protection of personal data: keyed tokens, the audited vault, FPE tokens and key rotation."""

from tianluo.protect.fpe import FF1, FormatPreservingTokenizer
from tianluo.protect.keys import (
    DataKeys,
    Keyring,
    MasterKeyError,
    WrongKeyError,
    load_key,
    load_keyring,
    sm3_hex,
)
from tianluo.protect.rotate import RotationError, retokenize_parquet
from tianluo.protect.tokens import ColumnTokenizer, Tokenizer, token_version
from tianluo.protect.vault import AuditError, AuditReport, Vault, VaultError, verify_audit

__all__ = [
    "FF1",
    "AuditError",
    "AuditReport",
    "ColumnTokenizer",
    "DataKeys",
    "FormatPreservingTokenizer",
    "Keyring",
    "MasterKeyError",
    "RotationError",
    "Tokenizer",
    "Vault",
    "VaultError",
    "WrongKeyError",
    "load_key",
    "load_keyring",
    "retokenize_parquet",
    "sm3_hex",
    "token_version",
    "verify_audit",
]
