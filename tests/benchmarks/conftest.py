"""The benchmark scripts' smoke runs (the GPU checks at toy sizes on the CPU)."""
