"""The interface between HSSPC and whatever supplies its compressed matrix.

HSSPC compresses the preconditioning Mat itself (from its entries or products)
unless the Mat's python context is an :class:`HSSProvider`: then it factors
what the provider hands it. A provider owns its compression and when to redo it
(the trainer's Gauss-Newton operator rebuilds H~ by its own rule; a user's
script may keep one H~ for many solves), and HSSPC stays unaware of where the
matrix came from.
"""
from abc import ABC, abstractmethod


class HSSProvider(ABC):
    """Base of a python Mat context that supplies HSSPC's H~.

    Subclasses implement :meth:`hss_matrix` (one that does not cannot be
    instantiated); ``hss_how`` (a short sentence) goes
    into the PC's view. Shift-aware accuracy (``-pc_hss_shift_aware``) is the
    provider's business: HSSPC refuses the option for a provider."""

    hss_how = "the matrix of the operator's HSS provider"

    @abstractmethod
    def hss_matrix(self, params, explicit=()):
        """(H~, shift) for HSSPC's set-up: an HSSMatrix or DistributedHSSMatrix
        and the shift the PC adds (``-pc_hss_shift`` comes on top). ``params``: the
        PC's -pc_hss_* values after defaults; ``explicit``: the names the user
        gave. Called on every set-up (every rank, collectively)."""


__all__ = ["HSSProvider"]
