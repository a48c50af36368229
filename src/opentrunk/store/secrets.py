"""Secrets at rest: API token hashes, SIP digest HA1 values, and the Fernet box that
encrypts the passwords opentrunk must be able to use again (origination URIs, carriers).

Why a plain SHA-256 for API tokens and not a slow KDF (bcrypt, scrypt, argon2): a token is
40 characters drawn at random from 62 symbols (~238 bits). A slow KDF protects *guessable*
secrets against offline guessing; nobody can enumerate 2^238 candidates however fast the
hash is. A slow KDF would instead cost every API request ~50-100 ms of CPU (or force a
long-lived cache of plaintext-equivalent state), capping the API's throughput at a few
tens of requests per second per core. SHA-256 costs about a microsecond.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import string
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

_TOKEN_ALPHABET = string.ascii_letters + string.digits
_ID_ALPHABET = string.ascii_uppercase + string.digits
KEY_FILE_NAME = "secret.key"


def new_auth_id(prefix: str = "MA") -> str:
    """An account id: the prefix then 18 uppercase letters and digits (20 characters)."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(18))


def new_auth_token() -> str:
    """A 40-character random API token."""
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(40))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented token against the stored hash."""
    return hmac.compare_digest(hash_token(token).encode(), stored_hash.encode())


def digest_ha1(username: str, realm: str, password: str) -> tuple[str, str]:
    """HA1 for SIP digest (RFC 7616): MD5 and SHA-256 of `username:realm:password`."""
    material = f"{username}:{realm}:{password}".encode()
    return hashlib.md5(material).hexdigest(), hashlib.sha256(material).hexdigest()


class SecretBox:
    """Encrypts and decrypts secrets that must be usable later (Fernet: AES-128-CBC + HMAC)."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken as exc:
            # Never echo the ciphertext: it says which key the operator lost, nothing more.
            raise ValueError("secret cannot be decrypted with the configured key") from exc


def load_or_create_key(secret_key: str, data_dir: str) -> bytes:
    """The configured key, else the key file under data_dir (created with mode 0600)."""
    if secret_key:
        return secret_key.encode("ascii")
    path = Path(data_dir) / KEY_FILE_NAME
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    # O_EXCL: two processes starting at once must not overwrite each other's key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    return key
