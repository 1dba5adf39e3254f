"""Seedling Studio kernels: attention backends, quantized and pre-packed linear layers, the
fused C++ DiT blocks.

Import the submodules directly (`from seedling.kernels.quant import quantize`); this file
imports nothing, so that importing the package stays free. The package lives under the
`seedling` import root so that it can never shadow Hugging Face's `kernels` distribution,
which transformers and bitsandbytes import.
"""
