from pathlib import Path

import pytest
from pydantic import ValidationError

from supportflow.settings import Settings, SettingsError


def test_environment_overrides_defaults_with_types():
    s = Settings.from_env({"SUPPORTFLOW_KAFKA_BOOTSTRAP": "kafka:9092", "SUPPORTFLOW_GRPC_DEADLINE_S": "0.5",
                           "SUPPORTFLOW_TOPIC_PARTITIONS": "6", "SUPPORTFLOW_INTENT_MODEL_DIR": "/models/x"})
    assert s.kafka_bootstrap == "kafka:9092"
    assert s.grpc_deadline_s == 0.5
    assert s.topic_partitions == 6
    assert s.intent_model_dir == Path("/models/x")


def test_malformed_value_fails_at_start_with_the_variable_name():
    with pytest.raises(SettingsError, match="SUPPORTFLOW_WEAVIATE_HTTP_PORT"):
        Settings.from_env({"SUPPORTFLOW_WEAVIATE_HTTP_PORT": "eighty"})


def test_the_sdk_key_variable_is_honoured_and_round_trips_to_child_env():
    s = Settings.from_env({"ANTHROPIC_API_KEY": "sk-test"})
    assert s.anthropic_api_key == "sk-test"
    again = Settings.from_env(s.to_env())
    assert again == s


def test_every_malformed_variable_is_named_in_one_error():
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"SUPPORTFLOW_WEAVIATE_HTTP_PORT": "eighty", "SUPPORTFLOW_GRPC_DEADLINE_S": "soon",
                           "SUPPORTFLOW_ACTIONS_DRY_RUN": "maybe", "SUPPORTFLOW_KAFKA_BOOTSTRAP": "kafka:9092"})
    message = str(raised.value)
    assert message.startswith("3 settings are invalid")
    for variable, value in [("SUPPORTFLOW_WEAVIATE_HTTP_PORT", "eighty"), ("SUPPORTFLOW_GRPC_DEADLINE_S", "soon"),
                            ("SUPPORTFLOW_ACTIONS_DRY_RUN", "maybe")]:
        assert f"{variable}={value!r}" in message
    assert "KAFKA_BOOTSTRAP" not in message


def test_the_process_environment_is_read_when_no_mapping_is_given(monkeypatch):
    monkeypatch.setenv("SUPPORTFLOW_TOPIC_PARTITIONS", "7")
    monkeypatch.setenv("supportflow_log_level", "DEBUG")  # names are case-insensitive
    settings = Settings.from_env()
    assert settings.topic_partitions == 7 and settings.log_level == "DEBUG"
    assert Settings.from_env({}).topic_partitions == 3  # a mapping replaces the environment
    monkeypatch.setenv("SUPPORTFLOW_TOPIC_PARTITIONS", "seven")
    with pytest.raises(SettingsError, match="SUPPORTFLOW_TOPIC_PARTITIONS='seven'"):
        Settings.from_env()


def test_the_supportflow_key_variable_wins_over_the_sdks():
    s = Settings.from_env({"ANTHROPIC_API_KEY": "sk-sdk", "SUPPORTFLOW_ANTHROPIC_API_KEY": "sk-ours"})
    assert s.anthropic_api_key == "sk-ours"
    assert Settings.from_env({}, anthropic_api_key="sk-arg").anthropic_api_key == "sk-arg"


def test_an_empty_path_is_unset_and_home_expands():
    s = Settings.from_env({"SUPPORTFLOW_INTENT_MODEL_DIR": "", "SUPPORTFLOW_BGE_MODEL_DIR": "~/models/bge"})
    assert s.intent_model_dir is None
    assert s.bge_model_dir == Path.home() / "models" / "bge"


def test_replace_validates_and_leaves_the_original_alone():
    s = Settings.from_env({"SUPPORTFLOW_TOPIC_PREFIX": "a."})
    changed = s.replace(topic_partitions="5", grpc_port=50070)
    assert changed.topic_partitions == 5 and changed.grpc_port == 50070 and changed.topic_prefix == "a."
    assert s.topic_partitions == 3
    with pytest.raises(SettingsError, match="SUPPORTFLOW_OPS_PORT='x'"):
        s.replace(ops_port="x")
    with pytest.raises(TypeError, match="no_such_setting"):
        s.replace(no_such_setting=1)


def test_settings_are_frozen_and_hashable():
    s = Settings.from_env({})
    with pytest.raises(ValidationError, match="frozen"):
        s.topic_prefix = "x"  # type: ignore[misc]
    assert hash(s) == hash(Settings.from_env({}))
