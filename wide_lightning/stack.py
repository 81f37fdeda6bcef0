"""Several copies of one network as one module, free of Lightning: parameters stacked, one vmapped call.

The Figure 4 scans train many small networks; one at a time, each step is a handful of tiny kernels
and the GPU idles between them. ``StackedNet`` holds the parameters of ``S`` networks of one
architecture as tensors ``[S, ...]`` (``torch.func.stack_module_state``) and runs all of them with one
``torch.func.vmap`` over ``functional_call``, so a training step of ``S`` models costs about the
launches of one. The members stay independent: a loss that sums the members' own losses gives each
member exactly the gradient it would get alone, and SGD acts elementwise, so each member trains as it
would alone on the same batches.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


def _key(name: str) -> str:
    return name.replace(".", "__")  # parameter names may not contain dots


class StackedNet(nn.Module):
    """``S`` networks with identical structure, each with its own weights, called together.

    Args:
        members: the networks (each with ``features``, ``head``, ``width`` and ``input_shape``, as
            ``wide_lightning.nets``); their weights are copied, the modules themselves not kept.
        trainable: which parameter names get gradients (default: all). A linear probe freezes
            ``features.*`` here.

    Inputs are either shared by all members, ``[B, C, H, W]``, or one batch per member,
    ``[S, B, C, H, W]``; outputs always have a leading member axis ``[S, B, ...]``.
    """

    def __init__(self, members: Sequence[nn.Module], trainable: Callable[[str], bool] = lambda name: True) -> None:
        super().__init__()
        if not members:
            raise ValueError("a stack needs at least one member network.")
        structure = [(n, tuple(p.shape)) for n, p in members[0].named_parameters()]
        for k, member in enumerate(members[1:], start=1):
            if [(n, tuple(p.shape)) for n, p in member.named_parameters()] != structure:
                raise ValueError(f"member {k} does not have the structure of member 0; a stack holds copies of one architecture.")
        if any(True for _ in members[0].buffers()):
            raise ValueError("StackedNet does not stack buffers (batch-norm statistics); the paper's networks have none.")
        params, _ = stack_module_state(list(members))
        self.names = [name for name, _ in structure]
        self.weights = nn.ParameterDict({
            _key(name): nn.Parameter(params[name].detach().clone(), requires_grad=trainable(name)) for name in self.names
        })
        # The structure to call, on the meta device; a plain attribute so it is neither a submodule nor saved.
        self.__dict__["skeleton"] = copy.deepcopy(members[0]).to("meta")
        first = members[0]
        self.num_members = len(members)
        self.width = first.width
        self.depth = getattr(first, "depth", None)
        self.input_shape = tuple(first.input_shape)

    def _params(self, prefix: str = "") -> dict[str, torch.Tensor]:
        return {name[len(prefix):]: self.weights[_key(name)] for name in self.names if name.startswith(prefix)}

    def _call(self, module: nn.Module, prefix: str, x: torch.Tensor, stacked_input: bool) -> torch.Tensor:
        def one(params: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(module, params, (inputs,))

        return vmap(one, in_dims=(0, 0 if stacked_input else None))(self._params(prefix), x)

    def _stacked_input(self, x: torch.Tensor) -> bool:
        sample_dims = len(self.input_shape)
        if x.dim() == sample_dims + 1:
            return False
        if x.dim() == sample_dims + 2 and x.shape[0] == self.num_members:
            return True
        raise ValueError(f"expected inputs [B, {', '.join(map(str, self.input_shape))}] or [{self.num_members}, B, ...], "
                         f"got {tuple(x.shape)}.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[S, B, classes]``."""
        return self._call(self.skeleton, "", x, self._stacked_input(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations ``[S, B, width]``."""
        return self._call(self.skeleton.features, "features.", x, self._stacked_input(x))

    def member(self, k: int) -> nn.Module:
        """Member ``k`` as a plain network (a copy on the stack's device): for atlases, probes, export."""
        if not 0 <= k < self.num_members:
            raise IndexError(f"member {k} of a stack of {self.num_members}.")
        device = next(iter(self.weights.values())).device
        net = copy.deepcopy(self.skeleton).to_empty(device=device)
        net.load_state_dict({name: self.weights[_key(name)][k].detach().clone() for name in self.names})
        return net


class StackedGroups(nn.Module):
    """Stacks of different architectures, each of the same ``S`` members, called on one input (the depth scan).

    Figure 4 (left) trains 5 seeds at each of 20 depths. One ``StackedNet`` per depth holds that
    depth's seeds; this module calls all of them on the same batch, so one training step covers
    every depth and seed. Member ``s`` of group ``g`` is member ``g * S + s`` of the whole, and
    outputs are ``[G * S, B, ...]``. The groups share nothing but their input: seed ``s``'s batches
    (``[S, B, ...]``) go to member ``s`` of every group, as each single run of that seed would see them.
    """

    def __init__(self, groups: Sequence[StackedNet]) -> None:
        super().__init__()
        if not groups:
            raise ValueError("StackedGroups needs at least one group.")
        sizes = sorted({g.num_members for g in groups})
        shapes = sorted({g.input_shape for g in groups})
        if len(sizes) != 1 or len(shapes) != 1:
            raise ValueError(f"every group must have the same members and input shape; got {sizes} members "
                             f"and input shapes {shapes}.")
        self.groups = nn.ModuleList(groups)
        self.members_per_group = sizes[0]
        self.num_members = len(groups) * sizes[0]
        self.input_shape = shapes[0]
        self.width = [g.width for g in groups]
        self.depth = [g.depth for g in groups]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[G * S, B, classes]``."""
        return torch.cat([group(x) for group in self.groups])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise TypeError(f"the groups' penultimate layers differ in width ({self.width}); "
                        f"read one group's: groups[g].features(x), or one network's: member(k).features(x).")

    def member(self, k: int) -> nn.Module:
        """Member ``k`` (``g * S + s``) as a plain network."""
        if not 0 <= k < self.num_members:
            raise IndexError(f"member {k} of {self.num_members}.")
        group, index = divmod(k, self.members_per_group)
        return self.groups[group].member(index)
