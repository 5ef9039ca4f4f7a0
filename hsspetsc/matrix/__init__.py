"""The HSS matrix (one implementation for one process and P ranks), its factorization, files and accuracy."""
