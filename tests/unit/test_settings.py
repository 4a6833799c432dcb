from pathlib import Path

import pytest
from pydantic import ValidationError

from integrations.settings import ClaudeSettings
from services.classifier.settings import ClassifierSettings
from services.drafter.settings import DrafterSettings
from services.escalator.settings import EscalatorSettings
from services.retriever.settings import RetrieverSettings
from supportflow.settings import Settings, SettingsError
from tooling.settings import SERVICE_SETTINGS, FleetSettings


def test_environment_overrides_defaults_with_types():
    s = ClassifierSettings.from_env({"SUPPORTFLOW_KAFKA_BOOTSTRAP": "kafka:9092", "SUPPORTFLOW_GRPC_DEADLINE_S": "0.5",
                           "SUPPORTFLOW_TOPIC_PARTITIONS": "6", "SUPPORTFLOW_INTENT_MODEL_DIR": "/models/x"})
    assert s.kafka_bootstrap == "kafka:9092"
    assert s.grpc_deadline_s == 0.5
    assert s.topic_partitions == 6
    assert s.intent_model_dir == Path("/models/x")


def test_malformed_value_fails_at_start_with_the_variable_name():
    with pytest.raises(SettingsError, match="SUPPORTFLOW_WEAVIATE_HTTP_PORT"):
        RetrieverSettings.from_env({"SUPPORTFLOW_WEAVIATE_HTTP_PORT": "eighty"})


def test_the_sdk_key_variable_is_honoured_and_round_trips_to_child_env():
    s = DrafterSettings.from_env({"ANTHROPIC_API_KEY": "sk-test"})
    assert s.anthropic_api_key == "sk-test"
    again = DrafterSettings.from_env(s.to_env())
    assert again == s


def test_every_malformed_variable_is_named_in_one_error():
    with pytest.raises(SettingsError) as raised:
        FleetSettings.from_env({"SUPPORTFLOW_WEAVIATE_HTTP_PORT": "eighty", "SUPPORTFLOW_GRPC_DEADLINE_S": "soon",
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
    s = ClaudeSettings.from_env({"ANTHROPIC_API_KEY": "sk-sdk", "SUPPORTFLOW_ANTHROPIC_API_KEY": "sk-ours"})
    assert s.anthropic_api_key == "sk-ours"
    assert ClaudeSettings.from_env({}, anthropic_api_key="sk-arg").anthropic_api_key == "sk-arg"


def test_an_empty_path_is_unset_and_home_expands():
    s = ClassifierSettings.from_env({"SUPPORTFLOW_INTENT_MODEL_DIR": "", "SUPPORTFLOW_BGE_MODEL_DIR": "~/models/bge"})
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


def test_a_service_reads_its_own_variables_and_no_other_services():
    others = {"SUPPORTFLOW_WEAVIATE_HTTP_PORT": "eighty", "SUPPORTFLOW_ACTIONS_DRY_RUN": "maybe"}
    drafter = DrafterSettings.from_env(others | {"SUPPORTFLOW_DRAFTER_WORKERS": "6"})
    assert drafter.drafter_workers == 6 and not hasattr(drafter, "weaviate_http_port")
    with pytest.raises(SettingsError, match="SUPPORTFLOW_ACTIONS_DRY_RUN='maybe'") as raised:
        EscalatorSettings.from_env(others)
    assert "WEAVIATE" not in str(raised.value)


def test_the_fleet_reads_every_services_settings_and_hands_each_its_own():
    fleet = FleetSettings.from_env({"SUPPORTFLOW_DRAFTER_WORKERS": "6", "SUPPORTFLOW_WEAVIATE_HTTP_PORT": "18090",
                                    "SUPPORTFLOW_TOPIC_PREFIX": "t."})
    service_fields = set()
    for name, settings_class in SERVICE_SETTINGS.items():
        assert issubclass(FleetSettings, settings_class), name
        own = settings_class.from_env(fleet.to_env())  # what a service the fleet starts reads
        assert own.topic_prefix == "t.", name
        service_fields |= set(settings_class.model_fields)
    assert SERVICE_SETTINGS["drafter"].from_env(fleet.to_env()).drafter_workers == 6
    assert SERVICE_SETTINGS["retriever"].from_env(fleet.to_env()).weaviate_http_port == 18090
    # What no service reads is the tools' own: the local stack's ports and the training encoders.
    assert set(FleetSettings.model_fields) - service_fields == {
        "kafka_controller_port", "weaviate_gossip_port", "weaviate_data_port", "weaviate_raft_port",
        "weaviate_raft_internal_rpc_port", "intent_encoder", "intent_second_encoder"}
    assert set(Settings.model_fields) <= service_fields
