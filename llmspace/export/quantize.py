"""Weight quantization of an exported ONNX decoder with onnxruntime.

Every MatMul becomes ``MatMulNBits``: block-wise symmetric integer weights,
blocks of 32 along the input dimension, with ``accuracy_level=4``, which lets
onnxruntime quantize the activations to int8 per block of 32 and use its int8
kernels (one scale per 32 values holds LLM activation outliers; one per tensor
does not). The embedding ``Gather`` is stored in int8 (one scale per tensor).
- q8: 8-bit blocks. We first used onnxruntime's dynamic int8 quantization
  (``MatMulInteger``, activations quantized on the fly): on SmolLM2-135M its
  logits correlated only 0.83 with PyTorch's and no greedy token agreed, because
  LLM activations have outliers that one uint8 scale per tensor cannot hold.
  Block-wise 8-bit: correlation 0.996, 16 of 16 greedy tokens. Without
  ``accuracy_level=4`` (float compute) it is as accurate but 7x slower on CPU.
- q4: 4-bit blocks; about 0.72 bytes per weight with the int8 embedding table
  (a 4-bit MatMul pass alone leaves that 49152-row table, a third of
  SmolLM2-135M, in fp32, making q4 larger than q8).
- int8 (opt-in): onnxruntime's dynamic int8 quantization (``MatMulInteger``, one
  activation scale per tensor). Least faithful (see q8 above) but the fastest in
  onnxruntime-web's WASM backend, whose ``MatMulNBits`` has no int8 kernels
  (measured in headless Chromium: ~2.8x the tok/s of q8/q4).
Needs the ``onnx-ir`` package (onnxruntime's ``MatMulNBitsQuantizer`` imports it).
"""

from __future__ import annotations

from pathlib import Path

from llmspace.errors import DependencyError


def _import_nbits_quantizer():
    """onnxruntime's matmul_nbits_quantizer calls ``logging.basicConfig(level=INFO)``
    at import, which would make every library in this process log at INFO (the
    quantizer alone prints thousands of lines). Undo that on the root logger."""
    import logging

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    root.setLevel(level)
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
    return DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer


def quantize_weights(src: Path, dst: Path, bits: int, block_size: int = 32) -> None:
    import onnx

    try:
        import onnx_ir  # noqa: F401
        from onnxruntime.quantization import QuantType, quantize_dynamic

        DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer = _import_nbits_quantizer()
    except ImportError as exc:
        raise DependencyError(f"Quantization needs onnxruntime>=1.20 and onnx-ir ({exc}): pip install onnx-ir") from None
    tmp = Path(dst).with_suffix(".matmul.onnx")
    try:
        config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, bits=bits, accuracy_level=4)
        quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), algo_config=config)
        quantizer.process()
        quantizer.model.save_model_to_file(str(tmp), False)
        quantize_dynamic(str(tmp), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["Gather"],
                         per_channel=False, reduce_range=False)
    finally:
        tmp.unlink(missing_ok=True)


def quantize_q8(src: Path, dst: Path) -> None:
    quantize_weights(src, dst, bits=8)


def quantize_q4(src: Path, dst: Path) -> None:
    quantize_weights(src, dst, bits=4)


def quantize_int8(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=False, reduce_range=False,
                     extra_options={"EnableSubgraph": True})


QUANTIZERS = {"q8": quantize_q8, "q4": quantize_q4, "int8": quantize_int8}
