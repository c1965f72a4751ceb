"""Weight quantization of an exported ONNX decoder with onnxruntime.

- q8: dynamic int8 quantization (``MatMulInteger`` and int8 ``Gather``): weights
  stored as int8 with one scale per tensor, activations quantized on the fly.
  ~4x smaller; faster on CPU; runs in onnxruntime-web's WASM backend.
- q4: 4-bit block-wise weights for every MatMul (``MatMulNBits``, blocks of 32,
  symmetric), then the embedding ``Gather`` in int8 as for q8: a 4-bit MatMul
  pass alone leaves the 49152-row embedding table (a third of SmolLM2-135M) in
  fp32, which would make q4 larger than q8. Needs the ``onnx-ir`` package.
"""

from __future__ import annotations

from pathlib import Path

from llmspace.errors import DependencyError


def quantize_q8(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=False, reduce_range=False,
                     extra_options={"EnableSubgraph": True})


def quantize_q4(src: Path, dst: Path, block_size: int = 32) -> None:
    import onnx

    try:
        import onnx_ir  # noqa: F401  (onnxruntime's 4-bit quantizer needs it)
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError as exc:
        raise DependencyError(f"int4 quantization needs onnxruntime>=1.20 and onnx-ir ({exc}): "
                              "pip install onnx-ir") from None
    tmp = Path(dst).with_suffix(".matmul4.onnx")
    try:
        quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), block_size=block_size, is_symmetric=True)
        quantizer.process()
        quantizer.model.save_model_to_file(str(tmp), False)
        quantize_dynamic(str(tmp), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["Gather"],
                         per_channel=False, reduce_range=False)
    finally:
        tmp.unlink(missing_ok=True)


QUANTIZERS = {"q8": quantize_q8, "q4": quantize_q4}
