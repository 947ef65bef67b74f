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

Codecs that are not Linear/activation chains (the convolutional AE) stack as a
:class:`FunctionalStack`: every parameter stacked to (S, ...) and the member module
mapped over its first dimension with ``torch.func.vmap`` (a batched convolution is a
grouped one). Under bf16 autocast the stacked convolutions would stay fp32 (vmap's batched
convolution runs beneath autocast's dispatch), so a functional stack casts its parameters and
input to autocast's dtype itself, in a stack of one as in a stack of many. Both kinds of stack
keep the same interface (``forward`` (S, B, 784), ``reconstruction_mse``, ``unstack_into``,
``size``); :func:`make_stack` picks one.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Sequence

import torch
from torch import nn


def linear_layers(model: nn.Module) -> list[tuple[nn.Linear, nn.Module]]:
    """[(Linear, the activation module that follows it), ...] in forward order.

    Accepts the codecs of :mod:`mnist_codec.codecs.models` (an encoder and a decoder of
    alternating Linear and activation modules). Anything else is refused.
    """
    mods = [m for m in model.modules() if not list(m.children())]  # leaves, in forward order
    if len(mods) % 2 or not mods:
        raise ValueError(f"cannot stack {type(model).__name__}: expected Linear/activation pairs")
    pairs = []
    for lin, act in zip(mods[0::2], mods[1::2], strict=True):
        if not isinstance(lin, nn.Linear) or isinstance(act, nn.Linear) or list(act.parameters()):
            raise ValueError(
                f"cannot stack {type(model).__name__}: expected Linear/activation pairs, "
                f"found {type(lin).__name__}, {type(act).__name__}"
            )
        pairs.append((lin, act))
    return pairs


def is_linear_chain(model: nn.Module) -> bool:
    """Whether the model is Linear/activation pairs only (a :class:`StackedAutoencoder` member)."""
    try:
        linear_layers(model)
    except ValueError:
        return False
    return True


def layout(model: nn.Module) -> Hashable:
    """What models must share to share a stack: for Linear/activation chains, the (in, out)
    widths of their linear layers (activations may differ); for any other module, its whole
    structure (``repr``: layer types, sizes and activations)."""
    if is_linear_chain(model):
        return tuple((lin.in_features, lin.out_features) for lin, _ in linear_layers(model))
    return ("module", repr(model))


class _Stack(nn.Module):
    """What every stack of S members offers besides ``forward`` (S, B, 784) -> (S, B, 784)."""

    size: int

    def unstack_into(self, k: int, model: nn.Module) -> None:
        """Copy member ``k``'s weights into ``model``, a module of the member's own layout."""
        raise NotImplementedError

    @torch.no_grad()
    def reconstruction_mse(self, x: torch.Tensor, chunk: int = 512) -> torch.Tensor:
        """Each member's mean per-pixel squared error on the same images x (N, 784): (S,) float64,
        in chunks of images small enough that (S, chunk, 784) stays in the CPU's caches."""
        total = torch.zeros(self.size, dtype=torch.float64, device=x.device)
        for i in range(0, len(x), chunk):
            xb = x[i : i + chunk]
            diff = self(xb.unsqueeze(0).expand(self.size, -1, -1)) - xb  # (S, chunk, 784)
            total += torch.sum(diff * diff, dim=(1, 2), dtype=torch.float64)
        return total / x.numel()


def _segments(names: list[str]) -> list[tuple[int, int]]:
    """Runs of equal names: ['a', 'a', 'b'] -> [(0, 2), (2, 3)]."""
    runs, start = [], 0
    for k in range(1, len(names) + 1):
        if k == len(names) or names[k] != names[start]:
            runs.append((start, k))
            start = k
    return runs


class StackedAutoencoder(_Stack):
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
            raise ValueError(f"members of one stack need one layout, found {sorted(shapes, key=repr)}")
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
        for w, b, acts in zip(self.weights, self.biases, self.activations, strict=True):
            h = torch.baddbmm(b.unsqueeze(1), h, w)  # (S, B, in) @ (S, in, out) -> (S, B, out)
            # one activation for all, or members with other activations: each slice through its own
            h = acts[0][2](h) if len(acts) == 1 else torch.cat([act(h[a:e]) for a, e, act in acts])
        return h

    @torch.no_grad()
    def unstack_into(self, k: int, model: nn.Module) -> None:
        """Copy member ``k``'s weights into ``model`` (of the stack's layout)."""
        for (lin, _), w, b in zip(linear_layers(model), self.weights, self.biases, strict=True):
            lin.weight.copy_(w[k].t())
            lin.bias.copy_(b[k])


class FunctionalStack(_Stack):
    """S copies of any one module structure; forward maps (S, B, 784) to (S, B, 784).

    Each parameter is kept stacked, (S, *shape), copied from the members
    (``torch.func.stack_module_state``); the members'
    own module runs on member k's slice of every parameter, for all k at once under
    ``torch.func.vmap``. Modules with buffers (batch norm's running statistics) are refused:
    a buffer updated inside vmap would not be written back.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("a stack needs at least one member")
        shapes = {layout(m) for m in members}
        if len(shapes) != 1:
            raise ValueError(f"members of one stack need one structure, found {len(shapes)}")
        if any(True for _ in members[0].buffers()):
            raise ValueError(f"cannot stack {type(members[0]).__name__}: it has buffers")
        self.size = len(members)
        self.names = [name for name, _ in members[0].named_parameters()]
        stacked, _ = torch.func.stack_module_state(list(members))  # name -> (S, *shape), copies
        self.params = nn.ParameterList(nn.Parameter(stacked[name].detach()) for name in self.names)
        # the module whose forward is mapped; kept out of this module's registry (its own
        # parameters are never used: functional_call swaps in the stacked ones)
        self._template = (copy.deepcopy(members[0]).to("meta"),)

    def _member(self, params: tuple[torch.Tensor, ...], x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self._template[0], dict(zip(self.names, params, strict=True)), (x,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = tuple(self.params)
        dtype = _autocast_dtype(x.device.type)
        if dtype is not None:  # vmap's batched convolution runs beneath autocast: cast as autocast
            params, x = tuple(p.to(dtype) for p in params), x.to(dtype)  # would (the grads flow back to fp32)
        if self.size == 1:  # the plain module on the one slice: what a model trained alone computes
            return self._member(tuple(p[0] for p in params), x[0]).unsqueeze(0)
        return torch.vmap(self._member)(params, x)  # (S, B, 784) -> (S, B, 784)

    @torch.no_grad()
    def unstack_into(self, k: int, model: nn.Module) -> None:
        """Copy member ``k``'s weights into ``model`` (of the stack's structure)."""
        for name, p in zip(self.names, self.params, strict=True):
            model.get_parameter(name).copy_(p[k])


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast is casting products to on ``device_type``, or None when it is off."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


def make_stack(members: Sequence[nn.Module]) -> _Stack:
    """The stack for members of one layout: batched matrix products for Linear/activation
    chains, a vmapped module for anything else."""
    if members and all(is_linear_chain(m) for m in members):
        return StackedAutoencoder(members)
    return FunctionalStack(members)
