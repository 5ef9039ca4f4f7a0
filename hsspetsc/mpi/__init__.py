"""The MPI layer: the one communicator of a command (errors agreed on every rank) and which rank owns which subtree."""
