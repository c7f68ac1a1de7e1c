"""SevenNet's equivariant node features: the scalar, vector and rank-2 channels before its last interaction.

The paper reports that features carrying rotational degrees of freedom (l > 0 channels) have a higher intrinsic
dimension than invariant ones. SevenNet's last interaction block reads an equivariant node state (7net-0:
128x0e + 64x1e + 32x2e = 480 numbers per atom) and writes scalars only, so this is the last layer that still
carries l > 0 channels. Mean-pooled over atoms, the l > 0 components rotate with the structure: the features are
equivariant, not invariant (what `options.features: equivariant` declares, and what claim (c) compares).
"""

from __future__ import annotations

import re

from benchmark.errors import ConfigError
from benchmark.models.sevenn_adapter import SevenNetAdapter

_BLOCK = re.compile(r"^(\d+)_self_interaction_1$")


class SevenNetEquivariantAdapter(SevenNetAdapter):
    """Mean over atoms of the equivariant node state entering SevenNet's last interaction block."""

    feature_source = (
        "input of the last interaction block (forward pre-hook on `<last>_self_interaction_1`, node attribute `x`): "
        "every irrep channel of the node state after the previous block's equivariant gate (7net-0: 128x0e + "
        "64x1e + 32x2e = 480 per atom, in e3nn's component order), mean-pooled over atoms; l > 0 components rotate "
        "with the structure"
    )

    def __init__(self, entry, device: str = "cpu") -> None:
        super().__init__(entry, device)
        if self.options.get("features") != "equivariant":
            raise ConfigError(f"model {entry.key!r}: {type(self).__name__} needs options.features: equivariant "
                              f"(got {self.options.get('features')!r}); use SevenNetAdapter for invariant features")

    def _load(self) -> None:
        super()._load()
        blocks = sorted(int(m.group(1)) for name in self.model._modules if (m := _BLOCK.match(name)))
        if not blocks:
            raise ConfigError(f"model {self.entry.key!r}: no `<i>_self_interaction_1` module in this SevenNet")
        last = self.model._modules[f"{blocks[-1]}_self_interaction_1"]
        last.register_forward_pre_hook(self._capture_equivariant)
        self.irreps = str(last.irreps_in)
        self.dim = int(last.irreps_in.dim)

    def _capture(self, module, args) -> None:
        """The readout's input is not wanted here (the equivariant hook runs first; this keeps it the last)."""

    def _capture_equivariant(self, module, args) -> None:
        from sevenn import _keys as KEY

        self._captured.append(args[0][KEY.NODE_FEATURE].detach())
