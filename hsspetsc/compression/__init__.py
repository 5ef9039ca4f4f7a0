"""Construction of H~: parameters, tree, neighbours, interactions, skeletons (entries or products), the contract, the serial and distributed drivers, tune."""
