"""CLaRa-style compression RAG: memory-token compressor, generator and query reasoner in one LM."""
