"""unlearn.validate: one message shape, bools are not numbers, the spec's errors are validation errors."""

import numpy as np
import pytest

from sweeps.spec import SpecError
from unlearn.validate import ValidationError, check, check_int, check_number, fail, is_int, is_number


def test_the_message_is_one_line_naming_field_allowed_and_value():
    with pytest.raises(ValidationError, match=r"^x\.y must be one of a, b; got 'c'$"):
        fail("x.y", "one of a, b", "c")
    with pytest.raises(ValueError) as error:
        fail("x", "short", np.arange(100))
    assert "\n" not in str(error.value)
    check(True, "x", "anything", None)


def test_bools_are_neither_ints_nor_numbers():
    assert is_int(3) and not is_int(True) and not is_int(3.0)
    assert is_number(0.5) and is_number(np.float32(0.5)) and not is_number(False) and not is_number("1")


@pytest.mark.parametrize("call, message", [
    (lambda: check_int("n", 0, 1), "n must be an integer >= 1; got 0"),
    (lambda: check_int("n", True, 0), "n must be an integer >= 0; got True"),
    (lambda: check_int("n", 4, 0, 3), r"n must be an integer in \[0, 3\]; got 4"),
    (lambda: check_number("lr", 0, strict=True), "lr must be a number > 0; got 0"),
    (lambda: check_number("w", -0.5), "w must be a number >= 0; got -0.5"),
    (lambda: check_number("w", float("nan")), "w must be a number >= 0; got nan"),
])
def test_range_checks(call, message):
    with pytest.raises(ValidationError, match=f"^{message}$"):
        call()
    check_int("n", 3, 0, 3)
    check_number("lr", 1e-5, strict=True)


def test_spec_errors_are_validation_errors():
    assert SpecError is ValidationError and issubclass(SpecError, ValueError)
