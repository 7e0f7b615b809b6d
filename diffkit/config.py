"""Run configuration and the one table of presets.

A run is fully described by a RunConfig; it is written to every checkpoint, so a run directory
alone rebuilds its degradation, network and sampler.
"""

import dataclasses
import math
import typing
from dataclasses import dataclass, field

from diffkit.errors import DiffkitError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DATASET_NAMES = ("fashion-mnist", "mnist")  # diffkit.data.DATASETS reads them; named here to keep the CLI light


@dataclass
class RunConfig:
    dataset: str = "mnist"
    degradation: str = "gaussian"
    degradation_options: dict = field(default_factory=dict)
    network: str = "unet"
    network_options: dict = field(default_factory=dict)
    sampler: str | None = None  # what `diffkit sample` uses; None: the degradation's default_sampler
    sampler_options: dict = field(default_factory=dict)
    sample_steps: int | None = None  # None: the sampler's default
    conditional: bool = False  # class-conditional: the network sees each image's label
    cond_dropout: float = 0.1  # conditional runs: how often training shows the null label instead (for guidance)
    steps: int = 10_000  # optimizer steps
    batch_size: int = 128
    lr: float = 2e-4
    warmup_steps: int = 0  # linear learning-rate warm-up
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2  # complete checkpoints kept: the newest and the ones a corrupt newest falls back to
    keep_steps: list = field(default_factory=list)  # steps whose checkpoints are saved and kept (budget curves)
    log_every: int = 50
    precision: str = "auto"  # autocast of network calls in training: auto|fp32|bf16|fp16 (auto: bf16 on capable GPUs)
    compile: bool = False  # torch.compile the network for training

    def __post_init__(self):
        self._check_types()
        for name in ("steps", "batch_size", "checkpoint_every", "keep_checkpoints", "log_every"):
            if not 1 <= getattr(self, name) <= LIMITS[name]:
                raise DiffkitError(f"{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)} "
                                   f"(at most {LIMITS[name]:,})")
        if not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= LIMITS["steps"] for s in self.keep_steps):
            raise DiffkitError(f"keep-steps must be a list of positive step counts, got {self.keep_steps!r}"[:200])
        if self.sample_steps is not None and self.sample_steps < 1:
            raise DiffkitError(f"sample steps must be a positive integer, got {self.sample_steps}")
        if not 0 <= self.warmup_steps <= LIMITS["steps"]:
            raise DiffkitError(f"warmup-steps must be a non-negative integer, got {self.warmup_steps}")
        if not 0 <= self.seed < 2**32:
            raise DiffkitError(f"seed must be an integer in 0..{2**32 - 1}, got {self.seed}")
        if not 0 < self.lr <= 10:
            raise DiffkitError(f"lr must be positive and at most 10, got {self.lr}")
        if not self.grad_clip > 0:
            raise DiffkitError(f"grad-clip must be positive, got {self.grad_clip}")
        if not 0 <= self.ema_decay < 1:
            raise DiffkitError(f"ema-decay must be in [0, 1), got {self.ema_decay}")
        if not 0 <= self.cond_dropout < 1:
            raise DiffkitError(f"cond-dropout must be in [0, 1), got {self.cond_dropout}")
        if self.precision not in PRECISIONS:
            raise DiffkitError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def _check_types(self):
        """Each field has its declared type: a bool is not a number, a float is finite (TOML and state.json
        values arrive unchecked)."""
        for f in dataclasses.fields(self):
            value, kinds = getattr(self, f.name), FIELD_TYPES[f.name]
            if value is None and type(None) in kinds:
                continue
            ok = not isinstance(value, bool) or bool in kinds
            ok = ok and isinstance(value, tuple(kinds))
            if float in kinds and ok and not math.isfinite(value):
                ok = False
            if not ok:
                expected = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
                raise DiffkitError(f"config value {f.name} = {value!r} must be {expected}")

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        if not isinstance(values, dict):
            raise DiffkitError(f"a run config must be a table of keys and values, got {values!r}"[:200])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DiffkitError(f"unknown config key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
        return cls(**values)


def _accepted(kind):
    """The Python types a field declared as `kind` accepts (X | None gives both; a float field takes ints)."""
    kinds = typing.get_args(kind) or (kind,)
    return kinds + (int,) if float in kinds else kinds


FIELD_TYPES = {name: _accepted(kind) for name, kind in typing.get_type_hints(RunConfig).items()}
LIMITS = {"steps": 10**9, "batch_size": 65_536, "checkpoint_every": 10**9, "keep_checkpoints": 1000, "log_every": 10**9}

# The `quick` budget: the network and training that draw recognisable digits in minutes on 2 CPU cores.
QUICK_TRAINING = dict(
    network="unet",
    network_options=dict(base_channels=32, channel_mults=[1, 2, 2], patch_size=2),
    steps=1400, batch_size=64, lr=2e-3, warmup_steps=100, ema_decay=0.995, checkpoint_every=200,
)


def paper(degradation, **options):
    """Bansal et al.'s (2022) MNIST setting of a cold degradation, at the quick budget, with Algorithm 2 and
    the paper's L1 loss."""
    return dict(degradation=degradation, degradation_options={**options, "loss": "l1"}, sampler="cold", **QUICK_TRAINING)


PRESETS = {
    # The seed project's defaults (Prince, Understanding Deep Learning coursework).
    "coursework": dict(
        degradation="gaussian",
        degradation_options=dict(schedule="linear", T=1000, beta_start=1e-4, beta_end=0.02, prediction="eps"),
        network="cnn",
        network_options=dict(hidden=[16, 32, 32, 16]),
        sampler="ddpm",
        steps=20_000, batch_size=128, lr=2e-4, ema_decay=0.999,
    ),
    # A second set worth comparing: cosine schedule, a wider CNN, a higher learning rate with warm-up.
    "coursework-alt": dict(
        degradation="gaussian",
        degradation_options=dict(schedule="cosine", T=1000, prediction="eps"),
        network="cnn",
        network_options=dict(hidden=[32, 64, 64, 32]),
        sampler="ddpm",
        steps=20_000, batch_size=128, lr=1e-3, warmup_steps=500, ema_decay=0.999,
    ),
    # Recognisable digits in under 10 minutes on 2 CPU cores (see docs/benchmarks.md). Heun in 10 log-SNR
    # steps (16 NFE) is the cheapest sampler within the uncertainty of the best FID measured on this model.
    "quick": dict(
        degradation="gaussian",
        degradation_options=dict(schedule="cosine", T=1000, prediction="v"),
        sampler="heun", sampler_options=dict(spacing="logsnr"), sample_steps=10,
        **QUICK_TRAINING,
    ),
    # Flow matching at the same budget: velocity target, logit-normal t, Heun's solver in 5 steps (8 NFE),
    # within the uncertainty of the best FID measured on this model.
    "flow": dict(
        degradation="flow",
        degradation_options=dict(T=1000, prediction="v", timesteps="logit-normal"),
        sampler="heun", sample_steps=5,
        **QUICK_TRAINING,
    ),
    # The cold-diffusion paper's MNIST settings, kept by name: with them x_T holds little more than the image
    # mean and a deterministic sampler collapses onto a few digits (README, chapter 2). The degradations'
    # own defaults are the settings that generate.
    "paper-blur": paper("blur", T=20, kernel_size=11, sigma=7.0, schedule="constant", prior_resolution=1,
                        prior_features="pool", prior_components=10, prior_noise=0.05, noise=0.0),
    "paper-mask": paper("mask", T=50, centre="fixed", spread=1.0, strength=1.0, prior_resolution=1, prior_noise=0.1,
                        noise=0.0),
    "paper-pixelate": paper("pixelate", T=5, factor=2.0, prior_resolution=1, prior_components=10, prior_noise=0.05,
                            noise=0.0),
    "paper-fade": paper("fade", T=20, towards="mean", schedule="cosine", prior_resolution=1, prior_noise=0.1,
                        noise=0.0),
    # Rissanen et al.'s (2023) MNIST noise: 0.01 in training, fresh δ = 0.01 per sampling step.
    "paper-heat": {**paper("heat", T=50, sigma_min=0.5, sigma_max=20.0, noise=0.01, prior_noise=0.0),
                   "sampler": "cold-naive", "sampler_options": {"delta": 0.01}},
}


def merge(base, overrides):
    """Preset values updated by explicit ones (None means not given).

    Choosing another component drops the preset's options for the old one, and choosing another
    degradation also drops the preset's sampler settings, which belong to the old degradation."""
    values = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for role in ("degradation", "network", "sampler"):
        if overrides.get(role) is not None and overrides[role] != values.get(role):
            values.pop(f"{role}_options", None)
            if role == "degradation" and overrides.get("sampler") is None:
                for key in ("sampler", "sampler_options", "sample_steps"):
                    values.pop(key, None)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return values


def read_toml(path, what):
    """A TOML file's table, or one line naming the file and what is wrong (`what`: "run config", ...); the one
    reader of diffkit's TOML files."""
    import tomllib
    from pathlib import Path

    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DiffkitError(f"cannot read {what} {path}: {exc}") from None


def preset(name):
    if name not in PRESETS:
        raise DiffkitError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return dict(PRESETS[name])
