"""The closed-form continuous-time head (``cfc``).

``model`` holds the head and its plain reference step; its fast paths sit beside it: ``kernels``
(the fused TorchScript sequence with hand-written backward passes, and the lean streaming step),
``streaming`` (that step as one numba call for small float32 CPU batches), ``compiled`` (the
training kernel's fold and step loops as numba calls on MKL's sgemm); ``ncps`` converts ncps's
modules.
"""
from heads.cfc.model import ACTIVATIONS, CfC
from heads.cfc import ncps  # noqa: F401  (registers the ncps converters)

__all__ = ["ACTIVATIONS", "CfC"]
