"""benchmarks/bench_serving.py's arithmetic and output, on made-up figures: percentiles, error
counting, the bandwidth limit, weight sizes, the markdown report and the plot. No model, no timing."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import _serving as sv  # noqa: E402


def test_percentile_interpolates_like_numpy():
    assert sv.percentile([4, 1, 3, 2], 50) == 2.5
    assert sv.percentile([1, 2, 3, 4], 95) == pytest.approx(3.85)
    assert sv.percentile([1, 2, 3, 4], 0) == 1 and sv.percentile([1, 2, 3, 4], 100) == 4
    assert sv.percentile([7.0], 95) == 7.0
    assert sv.percentile([None, 2, None], 50) == 2
    assert sv.percentile([], 50) is None and sv.median([None]) is None


def test_decode_rate_counts_tokens_after_the_first():
    assert sv.decode_tok_s(64, 0.5, 3.0) == pytest.approx(63 / 2.5)
    assert sv.decode_tok_s(1, 0.5, 0.5) is None  # one token: no decode interval
    assert sv.decode_tok_s(10, None, 2.0) is None and sv.decode_tok_s(10, 2.0, 2.0) is None


def test_a_503_with_retry_after_is_a_rejection_not_a_crash():
    assert sv.error_key(503, True) == "503 rejected"
    assert sv.error_key(429, True) == "429 rejected"
    assert sv.error_key(503, False) == "503"
    assert sv.error_key(500, True) == "500"
    assert sv.error_key(None, False, "connection") == "connection"


def _req(start, ttft, e2e, tokens, client=0):
    return {"ok": True, "start": start, "end": start + e2e, "ttft_s": ttft, "t_first": ttft,
            "t_last": e2e, "e2e_s": e2e, "completion_tokens": tokens, "client": client}


def test_summarize_sums_tokens_over_the_wall_time_and_counts_errors():
    reqs = [_req(10.0, 0.1, 2.1, 21, 0), _req(10.0, 0.5, 4.0, 36, 1),
            {"ok": False, "error": "503 rejected", "start": 10.2, "end": 10.3, "e2e_s": 0.1, "client": 2},
            {"ok": False, "error": "500", "start": 10.2, "end": 10.4, "e2e_s": 0.2, "client": 3}]
    s = sv.summarize(reqs, wall_s=4.0)
    assert (s["requests"], s["ok"], s["rejected"]) == (4, 2, 1)
    assert s["errors"] == {"503 rejected": 1, "500": 1}
    assert s["total_tok_s"] == pytest.approx(57 / 4.0) and s["requests_per_s"] == pytest.approx(0.5)
    assert s["ttft_p50_s"] == pytest.approx(0.3) and s["ttft_max_s"] == 0.5
    assert s["e2e_p95_s"] == pytest.approx(2.1 + 0.95 * 1.9)
    assert [r["start_s"] for r in s["per_request"]] == [0.0, 0.0, pytest.approx(0.2), pytest.approx(0.2)]
    json.dumps(s)  # goes into the JSON file as is


def test_bandwidth_limit_arithmetic_matches_benchmarks_md():
    # BENCHMARKS.md: ~31 GB/s over 538 MB of fp32 weights is ~58 tok/s; int8 136 MB ~230 tok/s
    assert sv.bandwidth_limit(31e9, 538e6) == pytest.approx(57.6, abs=0.1)
    assert sv.bandwidth_limit(31e9, 136e6) == pytest.approx(228, abs=1)
    assert sv.fraction_of_limit(28.8, 31e9, 538e6) == pytest.approx(0.5, abs=0.01)
    assert sv.fraction_of_limit(None, 31e9, 538e6) is None and sv.fraction_of_limit(10, 31e9, None) is None


def test_measure_bandwidth_returns_a_rate():
    assert sv.measure_bandwidth(1 << 20, repeats=1, threads=2) > 0


def _safetensors(path: Path, tensors: dict[str, list[int]]) -> None:
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in tensors.items():
        n = 4
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)


def test_parameter_count_from_safetensors_headers(tmp_path):
    _safetensors(tmp_path / "model-00001.safetensors", {"a": [2, 3], "b": [4]})
    _safetensors(tmp_path / "model-00002.safetensors", {"c": [5, 1, 2]})
    assert sv.safetensors_param_count(tmp_path / "model-00001.safetensors") == 10
    assert sv.model_param_count(tmp_path) == 20


def test_onnx_weight_bytes_counts_external_data(tmp_path):
    (tmp_path / "model_q4.onnx").write_bytes(b"x" * 100)
    assert sv.onnx_weight_bytes(tmp_path / "model_q4.onnx") == 100
    (tmp_path / "model_q4.onnx_data").write_bytes(b"x" * 900)
    assert sv.onnx_weight_bytes(tmp_path / "model_q4.onnx") == 1000


def test_rss_of_this_process_is_read():
    import os

    assert sv.rss_bytes(os.getpid()) > 1e6
    if Path("/proc/self/status").exists():
        assert sv.proc_status_kb(os.getpid(), "VmHWM") >= sv.proc_status_kb(os.getpid(), "VmRSS") > 0
    assert sv.proc_status_kb(2**31 - 1, "VmRSS") is None


def test_cells_and_markdown_table():
    assert sv.fmt(None) == "-" and sv.fmt(0.2504, "s") == "250 ms" and sv.fmt(2.5, "s") == "2.50 s"
    assert sv.fmt(0.456, "%") == "46%" and sv.fmt(538e6, "MB") == "538 MB" and sv.fmt(6.3, "x") == "6.30x"
    assert sv.fmt({"503 rejected": 2, "500": 1}) == "500: 1, 503 rejected: 2" and sv.fmt({}) == "0"
    table = sv.markdown_table(["a", "b|c"], [[1, "x|y"], [2.5, None]]).splitlines()
    assert table[0] == "| a | b\\|c |" and table[1] == "|---|---|" and table[2] == "| 1 | x\\|y |"
    assert len(table) == 4


def _result(llama=None, vllm_total=None):
    sweep = [{"clients": n, "backend": "llmspace onnx q4", "requests": 2 * n, "ok": 2 * n, "requests_per_s": 0.5 * n,
              "e2e_p50_s": 2.0, "e2e_p95_s": 2.5, "ttft_p50_s": 0.1, "ttft_p95_s": 0.2 * n, "total_tok_s": 30.0 * n,
              "errors": {}, "peak_rss": 9e8} for n in (1, 2)]
    conc = {"total_tok_s": 160.0, "x_one_stream": 160 / 31, "ttft_p50_s": 0.2, "ttft_p95_s": 0.3, "errors": {},
            "requests": 8, "ok": 8, "peak_rss": 1.1e9}
    servers = {"llmspace torch fp32": {"weights": "fp32", "weight_bytes": 538e6, "decode_tok_s": 26.0, "ttft_s": 0.108,
                                       "completion_tokens": 64, "prompt_tokens": 45, "peak_rss_1": 1e9,
                                       "concurrent": {**conc, "total_tok_s": 17.0, "x_one_stream": 17 / 26,
                                                      "ttft_p95_s": 22.0, "ok": 7,
                                                      "errors": {"503 rejected": 1}}},
               "llmspace onnx q4": {"weights": "q4", "weight_bytes": 86e6, "decode_tok_s": 120.0, "ttft_s": 0.1,
                                    "completion_tokens": 64, "prompt_tokens": 45, "peak_rss_1": 9e8,
                                    "concurrent": {**conc, "total_tok_s": 700.0, "x_one_stream": 700 / 120}}}
    if vllm_total:
        servers["vLLM (--vllm-url, bf16 assumed)"] = {"weights": "bf16", "weight_bytes": 269e6, "decode_tok_s": 32.0,
                                                      "ttft_s": 0.05, "concurrent": {**conc, "total_tok_s": vllm_total}}
    return {"machine": {"nproc": 2, "cpu": "Test CPU", "load_average": 0.5}, "time": "2026-12-04T00:00:00",
            "servers": servers, "sweep": sweep, "bandwidth_bytes_s": 31e9, "llama_cpp": llama,
            "hf_generate": {"weight_bytes": 538e6, "batch_1": {"decode_tok_s": 15.0, "ttft_s": 0.2},
                            "batch_8": {"total_tok_s": 78.0, "ttft_s": 0.9}}}


def test_targets_use_this_runs_figures_when_there_are_some():
    checks = {(t.split(" (")[0], v.split(":")[0]): ok for t, v, ok in sv.targets(_result(), 8)}
    assert checks[("1 stream >= llama.cpp", "llmspace onnx q4")] is True  # 120 >= 107 (reference)
    assert checks[("1 stream >= 6x plain transformers generate", "llmspace onnx q4")] is True  # 120 >= 90
    assert checks[("8 streams total >= 5x one stream", "llmspace onnx q4")] is True
    assert checks[("8 streams total >= 5x one stream", "llmspace torch fp32")] is False
    assert checks[("no request starved or failed", "llmspace torch fp32")] is False
    assert checks[("no request starved or failed", "llmspace onnx q4")] is True
    # measured in this run: llama.cpp faster than the best backend, vLLM's total above onnx's
    measured = sv.targets(_result(llama={"decode_tok_s": 130.0}, vllm_total=800.0), 8)
    assert any(t.startswith("1 stream >= llama.cpp (llama.cpp this run") and ok is False for t, _v, ok in measured)
    assert any("vLLM's (this run: 800)" in t and v.startswith("llmspace onnx") and ok is False for t, v, ok in measured)


def test_report_labels_reference_figures_and_prints_every_table():
    text = sv.report(_result(), tokens=64, concurrent=8)
    assert "nproc 2, Test CPU" in text
    assert "Reference, not this run" in text  # neither llama.cpp nor vLLM measured
    assert "| llmspace onnx q4 (HTTP, streamed) | 120.0 | 100 ms | 64 | 700.0 | 5.83x |" in text
    assert "| fp32 | 538 MB | 58 |" in text  # the bandwidth limit
    assert "| 2 | 4/4 | 1.00 |" in text  # the sweep
    assert "503 rejected: 1" in text and "NOT met" in text
    full = sv.report(_result(llama={"decode_tok_s": 110.0, "ttft_s": 0.13, "gguf": "m.gguf", "threads": 2,
                                    "completion_tokens": 64, "weight_bytes": 99e6}, vllm_total=198.0), 64, 8)
    assert "Reference, not this run" not in full and "| llama.cpp" in full and "| GGUF Q4_1 | 99 MB |" in full


def test_plot_is_written(tmp_path):
    sv.plot_sweep(_result()["sweep"], tmp_path / "serving.png", "test")
    assert (tmp_path / "serving.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_line_quick_and_backends():
    import bench_serving

    args = bench_serving.parse_args(["--quick", "--backends", "torch,onnx,onnx:q8", "--json", "/tmp/x/s.json"])
    assert args.backends == [("torch", None), ("onnx", "q4"), ("onnx", "q8")]
    assert (args.tokens, args.runs, args.sweep, args.requests) == (8, 1, [1, 2], 1)
    assert args.plot == "/tmp/x/s.png"
    with pytest.raises(SystemExit):
        bench_serving.parse_args(["--backends", "tensorrt"])
