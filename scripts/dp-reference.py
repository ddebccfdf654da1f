#!/usr/bin/env python3
"""Epsilon of DP-SGD by Google's dp-accounting (PyPI `dp-accounting`), the reference
Perun's accountant (crates/perun-ml/src/privacy.rs) is tested against
(tests/dp_accounting.rs).

Reads JSON lines {"q": .., "sigma": .., "steps": .., "delta": .., "orders": [..]} on stdin;
prints for each {"epsilon": <RdpAccountant with those orders>,
"epsilon_default_orders": <RdpAccountant's default orders>}. Needs
`pip install dp-accounting` (scripts/install-deps puts it in target/py)."""
import json
import sys

from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant as rdp


def eps(q, sigma, steps, delta, orders=None):
    kw = {"neighboring_relation": rdp.NeighborRel.ADD_OR_REMOVE_ONE}
    if orders is not None:
        kw["orders"] = [float(o) for o in orders]
    acc = rdp.RdpAccountant(**kw)
    acc.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma)), steps)
    return acc.get_epsilon(delta)


for line in sys.stdin:
    if not line.strip():
        continue
    r = json.loads(line)
    args = (r["q"], r["sigma"], r["steps"], r["delta"])
    print(json.dumps({"epsilon": eps(*args, r["orders"]), "epsilon_default_orders": eps(*args)}), flush=True)
