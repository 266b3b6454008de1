"""NumPy's global ``np.random.randint(0, high, size)``, compiled: the same numbers and the same state afterwards."""

import ctypes

import numba
import numpy as np
from numpy.random import MT19937
from numpy.random.mtrand import get_bit_generator

# Above this range NumPy draws 64-bit numbers (and at 2**32 - 1 unmasked ones): those calls are left to NumPy.
_LARGEST_MASKED_RANGE = 0xFFFFFFFE
# NumPy's ``mt19937_state``: ``uint32_t key[624]`` followed by ``int pos`` (the next word of ``key`` to use).
_KEY_WORDS = 624
_SHIFT = 397
_MATRIX_A = 0x9908B0DF
_UPPER_BIT = 0x80000000
_LOWER_BITS = 0x7FFFFFFF


# The generator's C function cannot be called instead: numba cannot cache code that holds a ctypes pointer, and
# compiling at every import costs ~0.8 s. So the state is read and advanced here, exactly as NumPy's mt19937.c does.
# The signatures compile these at import (from numba's cache after the first time), never inside a timed learn().
@numba.njit("void(uint32[::1])", cache=True, nogil=True)
def _regenerate(state: np.ndarray) -> None:  # pragma: no cover
    # mt19937_gen: the next 624 words of the Mersenne Twister, in place. Arithmetic in int64, stored as uint32.
    for index in range(_KEY_WORDS):
        bits = (np.int64(state[index]) & _UPPER_BIT) | (np.int64(state[(index + 1) % _KEY_WORDS]) & _LOWER_BITS)
        word = np.int64(state[(index + _SHIFT) % _KEY_WORDS]) ^ (bits >> 1) ^ (-(bits & 1) & _MATRIX_A)
        state[index] = np.uint32(word)
    state[_KEY_WORDS] = 0


@numba.njit("int64[::1](int64, int64, uint32[::1])", cache=True, nogil=True)
def _masked_draws(high: int, size: int, state: np.ndarray) -> np.ndarray:  # pragma: no cover
    # NumPy's random_bounded_uint64_fill for 0 < high - 1 < 2**32 - 1 with use_masked (the legacy RandomState's
    # choice): one 32-bit draw (mt19937_next32) masked to the smallest covering power of two, rejected while above
    # high - 1.
    limit = np.int64(high - 1)
    mask = limit
    for shift in (1, 2, 4, 8, 16):
        mask |= mask >> shift
    draws = np.empty(size, np.int64)
    for index in range(size):
        value = limit + 1
        while value > limit:
            if state[_KEY_WORDS] >= _KEY_WORDS:
                _regenerate(state)
            word = np.int64(state[state[_KEY_WORDS]])
            state[_KEY_WORDS] += 1
            word ^= word >> 11
            word ^= (word << 7) & 0x9D2C5680
            word ^= (word << 15) & 0xEFC60000
            word ^= word >> 18
            value = word & mask
        draws[index] = value
    return draws


_state_view: tuple[MT19937 | None, np.ndarray] = (None, np.empty(0, np.uint32))


def _mt19937_words(bit_generator: MT19937) -> np.ndarray | None:
    """
    The generator's C state as a ``uint32`` array (``key`` then ``pos``) sharing its memory, or None if that memory
    does not hold what ``bit_generator.state`` reports (a NumPy with another layout: then NumPy draws).
    """
    global _state_view
    cached_generator, words = _state_view
    if cached_generator is bit_generator:
        return words
    words = np.ctypeslib.as_array((ctypes.c_uint32 * (_KEY_WORDS + 1)).from_address(bit_generator.ctypes.state_address))
    reported = bit_generator.state["state"]
    if not (np.array_equal(words[:_KEY_WORDS], reported["key"]) and words[_KEY_WORDS] == reported["pos"]):
        return None
    _state_view = (bit_generator, words)  # the generator is kept alive with the view of its memory
    return words


def global_randint(high: int, size: int) -> np.ndarray:
    """
    ``np.random.randint(0, high, size=size)`` on NumPy's global legacy ``RandomState``: the same int64 numbers and the
    same generator state afterwards (NumPy keeps the legacy stream stable across versions), drawn in compiled code.

    SB3's replay buffers draw every batch with that call; after an update it goes through ~100-160 us of Cython and
    Python evicted from the caches on this CPU, this ~40-50 us. Ranges NumPy draws another way, and a global generator
    that is not an MT19937 (``np.random.set_bit_generator``), are passed to NumPy itself.

    :param high: one above the largest number
    :param size: how many numbers
    """
    bit_generator = get_bit_generator()
    if type(bit_generator) is not MT19937 or not 1 <= high - 1 <= _LARGEST_MASKED_RANGE:
        return np.random.randint(0, high, size=size)
    with bit_generator.lock:  # as RandomState does: other threads may share the global generator
        words = _mt19937_words(bit_generator)
        if words is not None:
            return _masked_draws(high, size, words)
    return np.random.randint(0, high, size=size)  # takes the (non-reentrant) lock itself
