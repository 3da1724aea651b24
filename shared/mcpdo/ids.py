"""Record ids: `<prefix>_<random>`, e.g. `ord_01jq3m8k2c7d9e4f6g0h1j2k3m`.

The prefix is the type's letters, lowercased, up to and including the first consonant after the first
vowel, padded with the following letters to at least three (`Order` -> `ord`, `Person` -> `per`,
`Product` -> `prod`, `Ticket` -> `tic`). The random part is a ULID in lowercase Crockford base32
(48-bit millisecond time, then 80 random bits), so ids sort roughly by creation time; within one
process ids created in the same millisecond still sort in creation order.
"""

from __future__ import annotations

import re
import secrets
import threading
import time

from mcpdo.errors import InputError
from mcpdo.inputs import show

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
MAX_ID_LENGTH = 128
_VOWELS = frozenset("aeiou")
_MIN_PREFIX = 3
_MAX_PREFIX = 8
_ID_PATTERN = re.compile(r"[A-Za-z0-9_.~-]+")
# Only for types whose rule-derived prefix reads badly; empty while the rule suffices.
PREFIX_OVERRIDES: dict[str, str] = {}

_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def type_prefix(type_name: str) -> str:
    """The short lowercase prefix for ids of `type_name`."""
    if type_name in PREFIX_OVERRIDES:
        return PREFIX_OVERRIDES[type_name]
    letters = "".join(ch for ch in type_name.lower() if "a" <= ch <= "z")
    if not letters:
        return "rec"
    end = len(letters)
    first_vowel = next((i for i, ch in enumerate(letters) if ch in _VOWELS), None)
    if first_vowel is not None:
        end = next((i + 1 for i in range(first_vowel + 1, len(letters)) if letters[i] not in _VOWELS), len(letters))
    return letters[: min(max(end, _MIN_PREFIX), _MAX_PREFIX)]


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def ulid() -> str:
    """A 26-character lowercase ULID, monotonic within this process."""
    global _last_ms, _last_random
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            # Same (or a stepped-back) clock: keep order by counting up from the previous id.
            ms, random_part = _last_ms, _last_random + 1
            if random_part >= 1 << 80:
                ms, random_part = ms + 1, secrets.randbits(79)
        else:
            random_part = secrets.randbits(79)  # headroom so increments never overflow in practice
        _last_ms, _last_random = ms, random_part
    return _encode(ms, 10) + _encode(random_part, 16)


def new_id(type_name: str) -> str:
    """A fresh, unique, URL-safe id for a record of `type_name`."""
    return f"{type_prefix(type_name)}_{ulid()}"


def is_valid_id(value: object) -> bool:
    """True for a non-empty string of URL-safe characters, at most 128 long."""
    return isinstance(value, str) and len(value) <= MAX_ID_LENGTH and _ID_PATTERN.fullmatch(value) is not None


def check_id(value: object, what: str = "id") -> str:
    """Return `value` if it is a valid id, else raise InputError naming it."""
    if not is_valid_id(value):
        raise InputError(
            f"{what} must be a non-empty string of letters, digits, '-', '_', '.' or '~' "
            f"(at most {MAX_ID_LENGTH}), got {show(value)}"
        )
    assert isinstance(value, str)
    return value
