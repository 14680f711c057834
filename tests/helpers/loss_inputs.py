"""Random logits and labels for the loss tests: a masked first position, a prompt-like masked span
and right padding."""

import torch


def make(b=3, t=7, v=11, dtype=torch.float64, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(b, t, v, generator=g, dtype=torch.float64) * scale).to(dtype)
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[:, 0] = -100
    labels[0, 1:3] = -100  # a prompt-like masked span
    labels[-1, -2:] = -100  # right padding
    return logits, labels
