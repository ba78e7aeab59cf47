"""Training machinery shared by the dense and sparse retrievers (and later the memory models)."""
