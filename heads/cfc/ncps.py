"""ncps's CfC modules as ``cfc`` heads (``heads.from_ncps``); ncps is never imported: modules are read
through their attributes."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from heads._registry import HeadError
from heads.cfc.model import CfC, _CfCLayer
from heads.interop import register_ncps_converter
from heads.wirings import from_ncps_wiring


def _copy(dst: Tensor, src: Tensor, what: str) -> None:
    if dst.shape != src.shape:
        raise HeadError(f"from_ncps: {what} has shape {tuple(src.shape)}, expected {tuple(dst.shape)}")
    with torch.no_grad():
        dst.copy_(src.detach().to(dst.dtype))


def _copy_heads(layer: _CfCLayer, cell: nn.Module, mask: Tensor | None) -> None:
    """ff1, ff2, time_a, time_b (or ff1 alone in pure mode) of an ncps CfCCell into ``layer.heads``."""
    names = ["ff1"] if layer.mode == "pure" else ["ff1", "ff2", "time_a", "time_b"]
    weights = [getattr(cell, name).weight for name in names]
    if mask is not None:  # ncps masks f1 and f2 only
        weights = [w * mask if name in ("ff1", "ff2") else w for w, name in zip(weights, names)]
    _copy(layer.heads.weight, torch.cat(weights, 0), "the heads weight")
    _copy(layer.heads.bias, torch.cat([getattr(cell, name).bias for name in names], 0), "the heads bias")
    if layer.mode == "pure":
        _copy(layer.w_tau, cell.w_tau.reshape(-1), "w_tau")
        _copy(layer.amplitude, cell.A.reshape(-1), "A")


# the classes ncps's CfCCell builds for its backbone_activation names
_NCPS_ACTIVATIONS = {"LeCun": "lecun_tanh", "Tanh": "tanh", "ReLU": "relu", "SiLU": "silu", "GELU": "gelu"}


def _cfc_from_cell(cell: nn.Module, mixed: bool) -> CfC:
    """Our head for an ncps CfCCell (dense)."""
    if getattr(cell, "sparsity_mask", None) is not None:
        raise HeadError("from_ncps: a CfCCell with a sparsity_mask is not supported; convert the WiredCfCCell")
    depth = int(cell.backbone_layers)
    modules = list(cell.backbone) if depth else []
    linears = [m for m in modules if isinstance(m, nn.Linear)]
    activations = {type(m).__name__ for m in modules if not isinstance(m, (nn.Linear, nn.Dropout))}
    unknown = activations - set(_NCPS_ACTIVATIONS)
    if unknown or len(activations) > 1:
        raise HeadError(f"from_ncps: backbone activation {', '.join(sorted(activations))} is not supported; "
                        f"supported: {', '.join(_NCPS_ACTIVATIONS.values())}")
    activation = _NCPS_ACTIVATIONS[activations.pop()] if activations else "lecun_tanh"
    dropout = max((m.p for m in modules if isinstance(m, nn.Dropout)), default=0.0)
    head = CfC(int(cell.input_size), int(cell.hidden_size), mode=cell.mode,
               backbone_units=linears[0].out_features if depth else None, backbone_layers=depth,
               backbone_dropout=dropout, backbone_activation=activation, mixed_memory=mixed)
    ours = head.layers[0]
    for j, (dst, src) in enumerate(zip(ours.backbone, linears)):
        _copy(dst.weight, src.weight, f"backbone Linear {j} weight")
        _copy(dst.bias, src.bias, f"backbone Linear {j} bias")
    _copy_heads(ours, cell, None)
    return head


def _cfc_from_wired_cell(cell: nn.Module, mixed: bool) -> CfC:
    """Our head for an ncps WiredCfCCell: one sub-cell per wiring layer."""
    wiring = from_ncps_wiring(cell._wiring)
    head = CfC(wiring.in_features, mode=cell._layers[0].mode, mixed_memory=mixed, wiring=wiring)
    for k, (ours, theirs) in enumerate(zip(head.layers, cell._layers)):
        mask = theirs.sparsity_mask.detach()
        rows = mask.shape[0]
        if not torch.equal(mask.to(ours.synapse_mask.dtype), ours.synapse_mask[:rows]):
            raise HeadError(f"from_ncps: the sparsity mask of wiring layer {k} does not match the wiring")
        _copy_heads(ours, theirs, mask)
    return head


@register_ncps_converter("CfCCell")
def from_ncps_cfc_cell(cell: nn.Module) -> CfC:
    """An ncps ``CfCCell`` (its ``forward(x, h, t)`` with t (B, 1) equals our ``step``)."""
    return _cfc_from_cell(cell, mixed=False)


@register_ncps_converter("WiredCfCCell")
def from_ncps_wired_cfc_cell(cell: nn.Module) -> CfC:
    """An ncps ``WiredCfCCell`` (state in wiring-layer order, as ncps keeps it)."""
    return _cfc_from_wired_cell(cell, mixed=False)


@register_ncps_converter("CfC")
def from_ncps_cfc(module: nn.Module) -> CfC:
    """An ncps ``CfC`` wrapper: its cell, and its LSTM with mixed memory; a projection is refused."""
    if isinstance(getattr(module, "fc", None), nn.Linear) or getattr(module, "proj_size", None) is not None:
        raise HeadError("from_ncps: a CfC with proj_size is not supported; convert it without the projection "
                        "and put the Linear in the task layer")
    mixed = bool(getattr(module, "use_mixed", False))
    cell = module.rnn_cell
    convert = _cfc_from_wired_cell if type(cell).__name__ == "WiredCfCCell" else _cfc_from_cell
    head = convert(cell, mixed)
    if mixed:
        _copy(head.lstm_input.weight, module.lstm.input_map.weight, "the LSTM input weight")
        _copy(head.lstm_input.bias, module.lstm.input_map.bias, "the LSTM input bias")
        _copy(head.lstm_recurrent.weight, module.lstm.recurrent_map.weight, "the LSTM recurrent weight")
    return head
