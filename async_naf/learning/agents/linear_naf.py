"""Linear-NAF baseline: NAF whose mu(x) is linear in the (normalised) observation.

V(x) and L(x) still come from the hidden layers (as in NAF); only the policy is ``mu(x) = x W + b``. This is
the "Linear-NAF" comparison of Gu et al. 2017. The unsquashed mu can leave the action box: ``act`` and the
exported :class:`~async_naf.learning.agents.Policy` clip it to the bounds (``output = 'clip'``). Uses the autograd
update (the fast hand-derived path is specific to the squashed head).
"""
from __future__ import annotations

import torch

from async_naf.learning.agents.naf import NAFAgent, NAFConfig


class LinearNAFAgent(NAFAgent):
    """NAF with a linear policy mu(x) = x_norm W_mu + b_mu; same config, API and checkpoint format."""

    algorithm = "linear_naf"
    _supports_fast = False

    def _build_layout(self):
        h = self.config.hidden_sizes[-1] if self.config.hidden_sizes else self.obs_dim
        n_out = 1 + self.n_tril
        return self._hidden_layout() + [
            ("head.weight", (h, n_out)),
            ("head.bias", (n_out,)),
            ("mu.weight", (self.obs_dim, self.act_dim)),
            ("mu.bias", (self.act_dim,)),
        ]

    def outputs(self, p, xn):
        out = torch.addmm(p["head.bias"], self._hidden(p, xn), p["head.weight"])
        mu = torch.addmm(p["mu.bias"], xn, p["mu.weight"])
        return out[:, 0], mu, out[:, 1:]

    def _policy_layers(self):
        p = self.params(0)
        return [(p["mu.weight"].numpy().copy(), p["mu.bias"].numpy().copy())], "clip"


__all__ = ["LinearNAFAgent", "NAFConfig"]
