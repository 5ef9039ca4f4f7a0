"""Helpers every layer uses: argument checks, thread counts, batched block reads and offsets, timing."""
