"""Sealed contacts: a resident's email and phone encrypted under a key of their request's own.

Why: a contact must be unreadable everywhere once the survey no longer needs it, and Kafka's
event log keeps every record for as long as rebuilds need the history. Erasing a record inside
the log is not possible, so the contact travels sealed (AES-256-GCM) and its key lives only in
PostgreSQL's vault (``storage/vault.py``); destroying the key erases every copy at once — in
the topic, its dead-letter queue, backups of either, and whatever a rebuild or a replay brings
back — while the rest of the event stays readable ("crypto-shredding").

The associated data binds a ciphertext to its request id and key id, so a sealed contact copied
onto another request, or paired with another request's key, fails to open instead of sending
one person's survey to another.
"""

from __future__ import annotations

import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12


class SealError(ValueError):
    """A sealed contact cannot be opened (wrong key, altered bytes, or not a sealed contact)."""


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def _aad(request_id: str, key_id: str) -> bytes:
    return f"nyc311-contact/v1\x00{request_id}\x00{key_id}".encode()


def seal(key: bytes, key_id: str, request_id: str, email: str | None,
         phone: str | None) -> bytes:
    """The contact as ``nonce || ciphertext || tag``."""
    nonce = os.urandom(NONCE_BYTES)
    plain = json.dumps({"email": email, "phone": phone}, separators=(",", ":")).encode()
    return nonce + AESGCM(key).encrypt(nonce, plain, _aad(request_id, key_id))


def open_sealed(key: bytes, key_id: str, request_id: str,
                sealed: bytes) -> tuple[str | None, str | None]:
    """(email, phone) from :func:`seal`'s output; :class:`SealError` if it does not open."""
    if len(sealed) <= NONCE_BYTES:
        raise SealError("too short to be a sealed contact")
    try:
        plain = AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:],
                                    _aad(request_id, key_id))
        contact = json.loads(plain)
        email, phone = contact["email"], contact["phone"]
    except (InvalidTag, ValueError, KeyError, TypeError):
        raise SealError("the sealed contact does not open with its key") from None
    if not all(v is None or isinstance(v, str) for v in (email, phone)):
        raise SealError("the sealed contact is not an email and a phone")
    return email, phone
