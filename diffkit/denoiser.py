"""The Denoiser: what samplers call instead of the network.

It turns (x_t, t) into x̂0 whatever the network predicts (x̂0, ε, v or a velocity: the degradation's
`predict_x0` knows), and holds what a sampling request adds to the bare network: the class labels of the batch
and the classifier-free guidance scale w (Ho & Salimans 2022). With w > 0 every call runs the network twice in
one batch, on the requested labels and on the null label, and returns

    prediction = cond + w·(cond − uncond)

on the network's declared prediction. Each target is affine in the others at a fixed x_t, so guiding ε, v or
x̂0 gives the same x̂0 (before it is clipped to [-1, 1]); for the cold degradations the prediction is x̂0 itself.
w = 0 is the conditional model alone (one evaluation); an unconditional run has no labels and no guidance.
"""

import torch

from diffkit.degradation import steps_for

class Denoiser:
    def __init__(self, network, degradation, labels=None, guidance=0.0, null_label=None):
        """network: callable network(x_t, t) or, with labels, network(x_t, t, labels); labels: (B,) class indices
        of the batch, or None; null_label: the index that means "no class" (needed when guidance > 0)."""
        if guidance and (labels is None or null_label is None):
            raise ValueError("guidance needs class labels and the network's null label")
        self.network, self.degradation = network, degradation
        self.labels, self.guidance, self.null_label = labels, float(guidance), null_label

    @property
    def evaluations(self):
        """Network evaluations per call, per image: 2 when guided."""
        return 2 if self.guidance else 1

    def prediction(self, x, t):
        """The network's output (its declared target) at x (B, C, H, W) and steps t (B,), guided if asked."""
        if self.labels is None:
            return self.network(x, t)
        labels = self.labels.to(x.device)
        if not self.guidance:
            return self.network(x, t, labels)
        both = self.network(torch.cat([x, x]), torch.cat([t, t]),
                            torch.cat([labels, torch.full_like(labels, self.null_label)]))
        cond, uncond = both.chunk(2)
        return cond + self.guidance * (cond - uncond)

    def __call__(self, x, t):
        """x̂0 in [-1, 1] from x at step t (an int, or a (B,) tensor of steps)."""
        if not torch.is_tensor(t):
            t = steps_for(x, t)
        return self.degradation.predict_x0(self.prediction, x, t).clamp(-1, 1)
