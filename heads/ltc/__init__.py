"""The liquid time-constant head (``ltc``).

``model`` holds the head and its plain reference step; its fast paths sit beside it: ``kernels``
(numba, float32 on the CPU) and ``torch_path`` (everything else); ``ncps`` converts ncps's modules.
"""
from heads.ltc.model import LTC, inverse_softplus
from heads.ltc import ncps  # noqa: F401  (registers the ncps converters)

__all__ = ["LTC", "inverse_softplus"]
