"""PIN epochs and PIN fingerprints (chargepin.core.epochs)."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from chargepin.core.epochs import epoch_pin, pin_fingerprint
from chargepin.core.errors import InvalidConfig
from chargepin.core.keys import derive_key
from chargepin.core.limits import MAX_EPOCH
from chargepin.core.pin import Pin, weakness

SECRET = bytes(range(32))
SERIAL = "CP-0001"

# The published vectors (docs/PROTOCOL.md). Epoch 13's first candidate (160160) is weak
# and epoch 1944's first sample is above the rejection limit: both take counter 1.
VECTORS = [
    (0, "063057", "661210c1ea07694e"),
    (1, "588876", "03c1de83d0cfd9a6"),
    (2, "738693", "796aae81e900d778"),
    (3, "585902", "2346416dbfe15ab5"),
    (13, "306310", "b170f09f9012bdd7"),
    (1000, "011424", "df6748148975842b"),
    (1944, "244464", "9e4b5f73703ede1f"),
]


def documented_epoch_pin(secret: bytes, serial: str, epoch: int) -> tuple[str, int]:
    """The derivation as docs/PROTOCOL.md spells it out; returns (PIN, counter used)."""
    key = derive_key(secret, serial, "epoch-pin")
    for counter in range(100):
        mac = hmac.digest(key, epoch.to_bytes(8, "big") + counter.to_bytes(4, "big"), "sha256")
        x = int.from_bytes(mac[:4], "big")
        if x >= 4_294_000_000:
            continue
        candidate = f"{x % 1_000_000:06d}"
        if weakness(candidate) is None:
            return candidate, counter
    raise AssertionError("no PIN within 100 counters")


@pytest.mark.parametrize(("epoch", "digits", "fingerprint"), VECTORS)
def test_vectors(epoch: int, digits: str, fingerprint: str) -> None:
    pin = epoch_pin(SECRET, SERIAL, epoch)
    assert pin.digits == digits
    assert pin_fingerprint(SECRET, SERIAL, pin).hex() == fingerprint


def test_vectors_cover_both_rejection_paths() -> None:
    assert documented_epoch_pin(SECRET, SERIAL, 13)[1] == 1
    assert documented_epoch_pin(SECRET, SERIAL, 1944)[1] == 1
    key = derive_key(SECRET, SERIAL, "epoch-pin")
    first = hmac.digest(key, (1944).to_bytes(8, "big") + bytes(4), "sha256")
    assert int.from_bytes(first[:4], "big") >= 4_294_000_000


def test_fingerprint_is_the_documented_hmac() -> None:
    key = derive_key(SECRET, SERIAL, "fingerprint")
    expected = hmac.digest(key, b"pin:042917", hashlib.sha256)[:8]
    assert pin_fingerprint(SECRET, SERIAL, Pin("042917")) == expected


@given(st.integers(min_value=0, max_value=MAX_EPOCH))
@example(MAX_EPOCH)  # the last epoch the air carries, still hashed as 8 bytes
def test_matches_the_documented_derivation_and_is_never_weak(epoch: int) -> None:
    pin = epoch_pin(SECRET, SERIAL, epoch)
    assert pin.digits == documented_epoch_pin(SECRET, SERIAL, epoch)[0]
    assert weakness(pin.digits) is None
    assert epoch_pin(SECRET, SERIAL, epoch) == pin


def test_epochs_serials_and_secrets_give_different_pins() -> None:
    by_epoch = {epoch_pin(SECRET, SERIAL, epoch) for epoch in range(200)}
    assert len(by_epoch) >= 195  # 200 draws from ~10**6: a few collisions at most
    others = [
        epoch_pin(SECRET, "CP-0002", 0),
        epoch_pin(bytes(32), SERIAL, 0),
        epoch_pin(SECRET, SERIAL, 1),
    ]
    assert epoch_pin(SECRET, SERIAL, 0) not in others


def test_fingerprints_differ_by_pin_serial_and_secret() -> None:
    pin = Pin("042917")
    prints = {
        pin_fingerprint(SECRET, SERIAL, pin),
        pin_fingerprint(SECRET, SERIAL, Pin("042918")),
        pin_fingerprint(SECRET, "CP-0002", pin),
        pin_fingerprint(bytes(32), SERIAL, pin),
    }
    assert len(prints) == 4
    assert all(len(fingerprint) == 8 for fingerprint in prints)


def test_first_digit_is_roughly_uniform() -> None:
    """Chi-square on the first digit over 5000 epochs (9 degrees of freedom).

    The inputs are fixed, so this is deterministic; 33.7 is the p = 0.0001 critical value.
    """
    samples = 5000
    counts = Counter(epoch_pin(SECRET, SERIAL, epoch).digits[0] for epoch in range(samples))
    expected = samples / 10
    chi_square = sum((counts[d] - expected) ** 2 / expected for d in "0123456789")
    assert chi_square < 33.7


@pytest.mark.parametrize("epoch", [-1, MAX_EPOCH + 1, 2**64, True, 1.0, "3"])
def test_epoch_must_be_a_u32_as_on_the_air(epoch: object) -> None:
    with pytest.raises(InvalidConfig, match="epoch"):
        epoch_pin(SECRET, SERIAL, epoch)  # type: ignore[arg-type]


def test_wrong_secret_size_is_refused() -> None:
    with pytest.raises(InvalidConfig, match="32 bytes"):
        epoch_pin(bytes(16), SERIAL, 0)
    with pytest.raises(InvalidConfig):
        pin_fingerprint(bytes(16), SERIAL, Pin("042917"))
