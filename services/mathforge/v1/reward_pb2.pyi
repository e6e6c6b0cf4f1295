from mathforge.v1 import common_pb2 as _common_pb2
from mathforge.v1 import evaluator_pb2 as _evaluator_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RewardKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REWARD_RULE: _ClassVar[RewardKind]
    REWARD_ORM: _ClassVar[RewardKind]
    REWARD_PRM: _ClassVar[RewardKind]
    REWARD_MIX: _ClassVar[RewardKind]
REWARD_RULE: RewardKind
REWARD_ORM: RewardKind
REWARD_PRM: RewardKind
REWARD_MIX: RewardKind

class RewardItem(_message.Message):
    __slots__ = ("question", "response", "reference")
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    question: str
    response: str
    reference: str
    def __init__(self, question: _Optional[str] = ..., response: _Optional[str] = ..., reference: _Optional[str] = ...) -> None: ...

class RewardRequest(_message.Message):
    __slots__ = ("items", "kind", "weights", "format_penalty", "policy", "line")
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_PENALTY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RewardItem]
    kind: RewardKind
    weights: _containers.ScalarMap[str, float]
    format_penalty: float
    policy: _evaluator_pb2.GradingPolicy
    line: str
    def __init__(self, items: _Optional[_Iterable[_Union[RewardItem, _Mapping]]] = ..., kind: _Optional[_Union[RewardKind, str]] = ..., weights: _Optional[_Mapping[str, float]] = ..., format_penalty: _Optional[float] = ..., policy: _Optional[_Union[_evaluator_pb2.GradingPolicy, _Mapping]] = ..., line: _Optional[str] = ...) -> None: ...

class StepReward(_message.Message):
    __slots__ = ("reward", "token_start", "token_end", "char_start", "char_end")
    REWARD_FIELD_NUMBER: _ClassVar[int]
    TOKEN_START_FIELD_NUMBER: _ClassVar[int]
    TOKEN_END_FIELD_NUMBER: _ClassVar[int]
    CHAR_START_FIELD_NUMBER: _ClassVar[int]
    CHAR_END_FIELD_NUMBER: _ClassVar[int]
    reward: float
    token_start: int
    token_end: int
    char_start: int
    char_end: int
    def __init__(self, reward: _Optional[float] = ..., token_start: _Optional[int] = ..., token_end: _Optional[int] = ..., char_start: _Optional[int] = ..., char_end: _Optional[int] = ...) -> None: ...

class RewardResult(_message.Message):
    __slots__ = ("reward", "steps", "correct", "extracted_answer")
    REWARD_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    EXTRACTED_ANSWER_FIELD_NUMBER: _ClassVar[int]
    reward: float
    steps: _containers.RepeatedCompositeFieldContainer[StepReward]
    correct: bool
    extracted_answer: str
    def __init__(self, reward: _Optional[float] = ..., steps: _Optional[_Iterable[_Union[StepReward, _Mapping]]] = ..., correct: _Optional[bool] = ..., extracted_answer: _Optional[str] = ...) -> None: ...

class RewardResponse(_message.Message):
    __slots__ = ("results", "model_versions")
    class ModelVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RewardResult]
    model_versions: _containers.ScalarMap[str, int]
    def __init__(self, results: _Optional[_Iterable[_Union[RewardResult, _Mapping]]] = ..., model_versions: _Optional[_Mapping[str, int]] = ...) -> None: ...

class LoadRewardModelRequest(_message.Message):
    __slots__ = ("kind", "version", "path", "line")
    KIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    version: int
    path: str
    line: str
    def __init__(self, kind: _Optional[str] = ..., version: _Optional[int] = ..., path: _Optional[str] = ..., line: _Optional[str] = ...) -> None: ...

class LoadRewardModelResponse(_message.Message):
    __slots__ = ("kind", "version", "load_seconds")
    KIND_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LOAD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    version: int
    load_seconds: float
    def __init__(self, kind: _Optional[str] = ..., version: _Optional[int] = ..., load_seconds: _Optional[float] = ...) -> None: ...
