"""Class conditioning and classifier-free guidance, and the promise that unconditional runs are unchanged."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import diffkit

REFERENCE = Path(__file__).parent / "data" / "unconditional-reference.safetensors"
UNET = {"base_channels": 8, "channel_mults": "1,2", "patch_size": 2, "heads": 2, "groups": 4}
# The tiny runs whose EMA weights and samples tests/data/unconditional-reference.safetensors holds, as the code
# before class conditioning made them (3 steps of 8 images, seed 3; 6 samples, seed 1, batches of 4).
REFERENCE_RUNS = {
    "cnn-gaussian": (dict(degradation="gaussian", network="cnn", options={"T": 50, "hidden": "4,8", "time_features": 8}),
                     "heun"),
    "unet-flow": (dict(degradation="flow", network="unet", options=UNET), "dpm++2m"),
    "unet-blur": (dict(degradation="blur", network="unet", options=UNET), "cold"),
}


@pytest.fixture
def one_thread():
    """The reference was made on one thread: more threads sum gradients in another order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", REFERENCE_RUNS)
def test_unconditional_runs_keep_their_weights_and_samples_bit_for_bit(tmp_path, name, one_thread):
    settings, sampler = REFERENCE_RUNS[name]
    reference = {k.removeprefix(f"{name}."): v for k, v in load_file(REFERENCE).items() if k.startswith(f"{name}.")}
    run = diffkit.train(tmp_path / name, steps=3, batch_size=8, seed=3, checkpoint_every=3, device="cpu", **settings)
    weights = run.network.state_dict()
    assert set(weights) == {k.removeprefix("ema.") for k in reference if k.startswith("ema.")}
    for key, value in weights.items():
        assert torch.equal(value, reference[f"ema.{key}"]), key
    samples = diffkit.load(tmp_path / name, device="cpu").sample(6, sampler=sampler, steps=4, seed=1, batch_size=4)
    assert torch.equal(samples.images, reference["samples"])
