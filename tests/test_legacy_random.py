"""global_randint draws what np.random.randint draws from the global generator, and leaves it in the same state."""

import numpy as np
import pytest

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
