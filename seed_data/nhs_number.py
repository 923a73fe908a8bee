"""NHS numbers: 10 digits, the last a Modulus 11 check digit.

https://www.datadictionary.nhs.uk/attributes/nhs_number.html — weights 10..2 over the first nine
digits; check = 11 - (sum mod 11); 11 becomes 0 and 10 means the nine digits have no valid number.
Synthetic data uses only the 999 000 0000 - 999 999 9999 range, which is reserved for testing.
"""

from __future__ import annotations

import random

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
TEST_RANGE_PREFIX = "999"


def check_digit(first_nine: str) -> int | None:
    """The Modulus 11 check digit for nine digits, or None when no valid number has them."""
    total = sum(int(digit) * weight for digit, weight in zip(first_nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def is_valid_nhs_number(number: str) -> bool:
    """True for ten digits whose last is the Modulus 11 check digit of the first nine."""
    if len(number) != 10 or not number.isdigit():
        return False
    return check_digit(number[:9]) == int(number[9])


def random_test_nhs_number(rng: random.Random) -> str:
    """A valid NHS number from the test range (999...), drawn from `rng`."""
    while True:
        first_nine = f"{TEST_RANGE_PREFIX}{rng.randrange(1_000_000):06d}"
        check = check_digit(first_nine)
        if check is not None:
            return f"{first_nine}{check}"
