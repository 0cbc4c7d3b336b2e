"""The closed-form continuous-time head (``cfc``).

``model`` holds the head and its plain reference step; its fast path sits beside it: ``kernels``
(the fused TorchScript sequence with hand-written backward passes, and the lean streaming step);
``ncps`` converts ncps's modules.
"""
from heads.cfc.model import ACTIVATIONS, CfC
from heads.cfc import ncps  # noqa: F401  (registers the ncps converters)

__all__ = ["ACTIVATIONS", "CfC"]
