"""global_randint draws what np.random.randint draws from the global generator, and leaves it in the same state."""

import numpy as np
import pytest
from numpy.random import MT19937
from numpy.random.mtrand import get_bit_generator, set_bit_generator

from sb3_ddpg_ext.common.legacy_random import global_randint


def _state() -> tuple:
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return name, keys.tobytes(), position, has_gauss, gauss


@pytest.mark.parametrize("high", [1, 2, 3, 7, 1_000, 65_537, 1_000_000, 2**31 + 3, 2**32 - 1, 2**32 + 5])
def test_same_numbers_and_state_as_numpy(high):
    np.random.seed(3)
    expected = np.random.randint(0, high, size=500)
    expected_state = _state()
    np.random.seed(3)
    drawn = global_randint(high, 500)
    assert drawn.dtype == expected.dtype
    np.testing.assert_array_equal(drawn, expected)
    assert _state() == expected_state


def test_a_later_numpy_draw_continues_the_same_stream():
    np.random.seed(11)
    np.random.randint(0, 300, size=64)
    expected = np.random.normal(size=8)
    np.random.seed(11)
    global_randint(300, 64)
    np.testing.assert_array_equal(np.random.normal(size=8), expected)


def test_an_empty_range_is_numpys_error():
    with pytest.raises(ValueError, match="high <= 0"):
        global_randint(0, 4)


def test_consecutive_draws_across_many_state_regenerations():
    # 624 words per regeneration of MT19937's state: these calls start and cross it at many positions.
    ranges = [1_000_003, 2**31 + 3, 5, 1 << 20] * 6
    np.random.seed(8)
    expected = [np.random.randint(0, high, size=300) for high in ranges]
    expected_state = _state()
    np.random.seed(8)
    for high, numbers in zip(ranges, expected, strict=True):
        np.testing.assert_array_equal(global_randint(high, 300), numbers)
    assert _state() == expected_state


def test_a_replaced_global_generator_is_the_one_drawn_from():
    previous = get_bit_generator()
    try:
        global_randint(100, 10)  # the first generator's state memory is in use
        set_bit_generator(MT19937(21))
        drawn = global_randint(100, 50)
        set_bit_generator(MT19937(21))
        np.testing.assert_array_equal(drawn, np.random.randint(0, 100, size=50))
    finally:
        set_bit_generator(previous)
