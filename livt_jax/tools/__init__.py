"""Commands run beside training, never by it: benchmarks, the GPU kit, checkpoint conversion, the cache builder."""
