"""NumPy's global ``np.random.randint(0, high, size)``, compiled: the same numbers and the same state afterwards."""

import numba
import numpy as np
from numpy.random import MT19937
from numpy.random.mtrand import get_bit_generator

# Above this range NumPy draws 64-bit numbers (and at 2**32 - 1 unmasked ones): those calls are left to NumPy.
_LARGEST_MASKED_RANGE = 0xFFFFFFFE
# The C function of every MT19937 (the generator's state is an argument), so it can be fixed at compile time.
_next_uint32 = MT19937().ctypes.next_uint32


@numba.njit(nogil=True)
def _masked_draws(high: int, size: int, state: int) -> np.ndarray:
    # NumPy's random_bounded_uint64_fill for 0 < high - 1 < 2**32 - 1 with use_masked (the legacy RandomState's
    # choice): one 32-bit draw masked to the smallest covering power of two, rejected while above high - 1.
    limit = np.uint32(high - 1)
    mask = limit
    for shift in (1, 2, 4, 8, 16):
        mask |= mask >> shift
    draws = np.empty(size, np.int64)
    for index in range(size):
        value = _next_uint32(state) & mask
        while value > limit:
            value = _next_uint32(state) & mask
        draws[index] = value
    return draws


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
        return _masked_draws(high, size, bit_generator.ctypes.state_address)
