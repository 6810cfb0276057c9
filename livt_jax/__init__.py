"""livt-jax: LiVT (MGP + Bal-BCE) for long-tailed image classification in JAX/Flax."""

__version__ = "0.1.0"
