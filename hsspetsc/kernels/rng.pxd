# cython: language_level=3
"""Counter-based random streams for the construction kernels (nogil, no state).

Every random choice made for node ``a`` is ``draw(node_key(key, a), c)`` for a
counter c = 0, 1, 2, ... local to that node. ``key`` is a 64-bit phase key that
Python derives from the user's seed with numpy's SeedSequence (one per phase:
tree, neighbour trees, row sampling). A node's draws therefore depend only on
(seed, phase, node, counter), never on the thread or the order nodes are visited
in, so the result is bitwise the same for any thread count.
The mixer is SplitMix64 (Steele, Lea, Flood 2014), whose output passes BigCrush.
"""
from libc.stdint cimport int64_t, uint64_t


cdef inline uint64_t splitmix64(uint64_t x) noexcept nogil:
    x = x + <uint64_t>0x9E3779B97F4A7C15ULL
    x = (x ^ (x >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    x = (x ^ (x >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return x ^ (x >> 31)


cdef inline uint64_t node_key(uint64_t key, int64_t node) noexcept nogil:
    """The stream key of ``node`` within a phase."""
    return splitmix64(key ^ splitmix64(<uint64_t>node))


cdef inline uint64_t draw(uint64_t key, uint64_t counter) noexcept nogil:
    """The counter-th 64-bit draw of a stream."""
    return splitmix64(key + counter * <uint64_t>0xD1B54A32D192ED03ULL)


cdef inline int64_t draw_below(uint64_t key, uint64_t counter, int64_t n) noexcept nogil:
    """A draw in [0, n) (n >= 1; modulo bias < n / 2**64)."""
    return <int64_t>(draw(key, counter) % <uint64_t>n)
