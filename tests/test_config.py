import pytest

from llmspace.config import Settings
from llmspace.errors import ConfigError


def test_defaults_run_on_cpu(tmp_path):
    s = Settings.load(env={}, home=tmp_path)
    assert s.backend == "torch" and s.device == "auto" and s.port == 7860
    assert s.home == tmp_path.resolve()
    assert s.indexes_dir == tmp_path.resolve() / "indexes"


def test_env_values_are_read_and_typed(tmp_path):
    s = Settings.load(env={"LLMSPACE_HOME": str(tmp_path), "LLMSPACE_PORT": "9000", "LLMSPACE_BACKEND": "onnx"})
    assert s.port == 9000 and s.backend == "onnx"


def test_overrides_beat_env(tmp_path):
    s = Settings.load(env={"LLMSPACE_PORT": "9000"}, home=tmp_path, port=9001)
    assert s.port == 9001


def test_unknown_env_key_is_an_error_naming_valid_keys():
    with pytest.raises(ConfigError) as e:
        Settings.load(env={"LLMSPACE_PROT": "1"})
    assert "LLMSPACE_PROT" in e.value.message and "LLMSPACE_PORT" in e.value.message


def test_unknown_override_is_an_error():
    with pytest.raises(ConfigError, match="colour"):
        Settings.load(env={}, colour="blue")


@pytest.mark.parametrize("key,value", [("LLMSPACE_PORT", "abc"), ("LLMSPACE_BACKEND", "tpu"),
                                       ("LLMSPACE_PORT", "70000"), ("LLMSPACE_THREADS", "0")])
def test_bad_values_name_the_setting(key, value):
    with pytest.raises(ConfigError) as e:
        Settings.load(env={key: value})
    assert key[len("LLMSPACE_"):].lower() in e.value.message


def test_describe_masks_secrets():
    s = Settings.load(env={}, remote_api_key="sk-secret")
    assert s.describe()["remote_api_key"] == "***"


def test_the_remote_backend_is_offered_with_its_url_flags(capsys):
    # tests/test_remote_backend.py runs it against a live server
    assert Settings.load(env={"LLMSPACE_BACKEND": "remote"}).backend == "remote"
    from llmspace.cli import main

    with pytest.raises(SystemExit):
        main(["chat", "--help"])
    out = capsys.readouterr().out
    assert "remote" in out and "--remote-url" in out and "--remote-model" in out
