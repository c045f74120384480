"""Survey link tokens: round trip, forgery, tampering, expiry."""

from __future__ import annotations

import time

import pytest

from survey.links import TokenError, TokenExpired, make_token, read_token

SECRET = "s" * 32


def test_round_trip_carries_survey_request_and_language():
    token = make_token(SECRET, "6f1c0e4e-0000-4000-8000-000000000001", "59000001", "ar")
    claim = read_token(SECRET, token, max_age_seconds=3600)
    assert (claim.survey_id, claim.request_id, claim.language) == (
        "6f1c0e4e-0000-4000-8000-000000000001", "59000001", "ar")


def test_a_token_signed_with_another_key_is_refused():
    token = make_token("another-secret-of-32-characters!", "x", "1", "en")
    with pytest.raises(TokenError):
        read_token(SECRET, token, 3600)


# Not the last character: in base64 its low bits are padding, and a change there can decode to
# the same bytes.
@pytest.mark.parametrize("position", [0, 10, 30, -5, -3])
def test_a_tampered_token_is_refused(position):
    token = make_token(SECRET, "x", "1", "en")
    chars = list(token)
    chars[position] = "A" if chars[position] != "A" else "B"
    with pytest.raises(TokenError):
        read_token(SECRET, "".join(chars), 3600)


def test_an_old_token_is_expired(monkeypatch):
    issued = time.time() - 10 * 86400
    monkeypatch.setattr(time, "time", lambda: issued)
    token = make_token(SECRET, "x", "1", "en")
    monkeypatch.undo()
    with pytest.raises(TokenExpired):
        read_token(SECRET, token, max_age_seconds=86400)
    assert read_token(SECRET, token, max_age_seconds=30 * 86400).survey_id == "x"


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="16 characters"):
        make_token("short", "x", "1", "en")
