"""ncps's ``LTCCell`` and ``LTC`` as ``ltc`` heads (``heads.from_ncps``); ncps is never imported here."""
from __future__ import annotations

import torch
from torch import nn

from heads._registry import HeadError
from heads.interop import register_ncps_converter
from heads.ltc.model import POSITIVE_PARAMETERS, LTC, inverse_softplus
from heads.wirings import from_ncps_wiring


@register_ncps_converter("LTCCell")
def ltc_from_ncps_cell(cell: nn.Module) -> LTC:
    """Our LTC with the wiring and weights of an ncps ``LTCCell`` (either parameter constraint mode).

    With ``implicit_param_constraints=False`` ncps uses gleak, cm, w and sensory_w as they are; we
    store their inverse softplus, clipping values below zero to zero as ncps's
    ``apply_weight_constraints`` would.
    """
    mapping = {"affine": "affine", "linear": "linear"}
    wiring = from_ncps_wiring(cell._wiring)
    head = LTC(
        wiring.in_features,
        wiring=wiring,
        ode_unfolds=int(cell._ode_unfolds),
        input_mapping=mapping.get(cell._input_mapping),
        output_mapping=mapping.get(cell._output_mapping),
        epsilon=float(cell._epsilon),
    )
    implicit = bool(cell._implicit_param_constraints)
    ours = dict(head.named_parameters())
    with torch.no_grad():
        for name, param in ours.items():
            value = getattr(cell, name).detach().float().cpu()
            if name in POSITIVE_PARAMETERS and not implicit:
                value = inverse_softplus(value)
            if value.shape != param.shape:
                raise HeadError(
                    f"from_ncps: LTCCell.{name} has shape {tuple(value.shape)}, expected {tuple(param.shape)}"
                )
            param.copy_(value)
    device = cell.gleak.device
    return head.to(device)


@register_ncps_converter("LTC")
def ltc_from_ncps(module: nn.Module) -> LTC:
    """Our LTC for an ncps ``LTC`` sequence wrapper (its ``rnn_cell``); mixed memory is unsupported.

    Our head always returns every step, batch-first; ``return_sequences``/``batch_first`` are choices
    of the caller there.
    """
    if getattr(module, "use_mixed", False):
        raise HeadError("from_ncps: an ncps LTC with mixed_memory=True is unsupported (its LSTM memory cell)")
    if getattr(module, "proj_size", None) or getattr(module, "fc", None) is not None:
        raise HeadError("from_ncps: an ncps LTC with an output projection is unsupported")
    return ltc_from_ncps_cell(module.rnn_cell)
