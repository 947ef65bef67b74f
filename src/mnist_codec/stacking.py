"""Several autoencoders of one layout as one module, so they train in batched matrix products.

A stack of S members keeps, for each linear layer, one weight (S, in, out) and one bias
(S, out); a forward pass is one ``baddbmm`` per layer for all members at once, each member
on its own batch: (S, B, in) -> (S, B, out). The weights are kept transposed (nn.Linear
keeps (out, in)) so that backward writes each weight's gradient as the matrix product gives
it; in Linear's layout every step paid a transposing copy of each gradient (5 to 15% of a
step in the measurements here) for bit for bit the same numbers. Members may differ in
their activations (a ReLU, a Tanh and a LeakyReLU model share a stack): each layer applies
every member's own activation to its own slice.

A member's numbers depend only on its own weights and data: nothing in a forward or
backward pass mixes members, and Adam is elementwise, so a model trained in a stack of
nine gives the losses it gives in a stack of one (a test checks this to 1e-6).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def linear_layers(model: nn.Module) -> list[tuple[nn.Linear, nn.Module]]:
    """[(Linear, the activation module that follows it), ...] in forward order.

    Accepts the codecs of :mod:`mnist_codec.models` (an encoder and a decoder of
    alternating Linear and activation modules). Anything else is refused.
    """
    mods = [m for m in model.modules() if not list(m.children())]  # leaves, in forward order
    if len(mods) % 2 or not mods:
        raise ValueError(f"cannot stack {type(model).__name__}: expected Linear/activation pairs")
    pairs = list(zip(mods[0::2], mods[1::2]))
    for lin, act in pairs:
        if not isinstance(lin, nn.Linear) or isinstance(act, nn.Linear) or list(act.parameters()):
            raise ValueError(f"cannot stack {type(model).__name__}: expected Linear/activation pairs, "
                             f"found {type(lin).__name__}, {type(act).__name__}")
    return pairs


def layout(model: nn.Module) -> tuple[tuple[int, int], ...]:
    """The (in, out) widths of a model's linear layers: models with one layout can share a stack."""
    return tuple((lin.in_features, lin.out_features) for lin, _ in linear_layers(model))


def _segments(names: list[str]) -> list[tuple[int, int]]:
    """Runs of equal names: ['a', 'a', 'b'] -> [(0, 2), (2, 3)]."""
    runs, start = [], 0
    for k in range(1, len(names) + 1):
        if k == len(names) or names[k] != names[start]:
            runs.append((start, k))
            start = k
    return runs


class StackedAutoencoder(nn.Module):
    """S autoencoders of one layout; forward maps (S, B, 784) to (S, B, 784).

    Built from the members' current weights (copied, not shared); :meth:`unstack_into`
    copies them back.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("a stack needs at least one member")
        per_member = [linear_layers(m) for m in members]
        shapes = {layout(m) for m in members}
        if len(shapes) != 1:
            raise ValueError(f"members of one stack need one layout, found {sorted(shapes)}")
        self.size = len(members)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.activations: list[list[tuple[int, int, nn.Module]]] = []  # per layer: (start, end, act)
        with torch.no_grad():
            for layer in range(len(per_member[0])):
                lins = [pm[layer][0] for pm in per_member]
                acts = [pm[layer][1] for pm in per_member]
                self.weights.append(nn.Parameter(torch.stack([lin.weight.detach().t() for lin in lins])))
                self.biases.append(nn.Parameter(torch.stack([lin.bias.detach() for lin in lins]).clone()))
                runs = _segments([repr(a) for a in acts])  # e.g. "LeakyReLU(negative_slope=0.01)"
                self.activations.append([(a, b, acts[a]) for a, b in runs])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x  # (S, B, in)
        for w, b, acts in zip(self.weights, self.biases, self.activations):
            h = torch.baddbmm(b.unsqueeze(1), h, w)  # (S, B, in) @ (S, in, out) -> (S, B, out)
            if len(acts) == 1:
                h = acts[0][2](h)
            else:  # members with other activations: each slice through its own
                h = torch.cat([act(h[a:e]) for a, e, act in acts])
        return h

    @torch.no_grad()
    def reconstruction_mse(self, x: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
        """Each member's mean per-pixel squared error on the same images x (N, 784): (S,) float64."""
        total = torch.zeros(self.size, dtype=torch.float64, device=x.device)
        for i in range(0, len(x), chunk):
            xb = x[i: i + chunk]
            diff = self(xb.unsqueeze(0).expand(self.size, -1, -1)) - xb  # (S, chunk, 784)
            total += torch.sum(diff * diff, dim=(1, 2), dtype=torch.float64)
        return total / x.numel()

    @torch.no_grad()
    def unstack_into(self, k: int, model: nn.Module) -> None:
        """Copy member ``k``'s weights into ``model`` (of the stack's layout)."""
        for (lin, _), w, b in zip(linear_layers(model), self.weights, self.biases):
            lin.weight.copy_(w[k].t())
            lin.bias.copy_(b[k])
