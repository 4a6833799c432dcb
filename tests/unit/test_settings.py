from pathlib import Path

import pytest

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
