"""Knowledge in model memory: compression RAG (CLaRa) and parametric QA."""
