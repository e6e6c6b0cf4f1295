from mathforge.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GradingPolicy(_message.Message):
    __slots__ = ("percent", "units", "tuples", "box", "last_number_fallback", "rel_tol", "timeout_s", "format", "decimal_comma", "rounded_decimals")
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    TUPLES_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    LAST_NUMBER_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    REL_TOL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DECIMAL_COMMA_FIELD_NUMBER: _ClassVar[int]
    ROUNDED_DECIMALS_FIELD_NUMBER: _ClassVar[int]
    percent: str
    units: str
    tuples: str
    box: str
    last_number_fallback: bool
    rel_tol: float
    timeout_s: float
    format: str
    decimal_comma: str
    rounded_decimals: str
    def __init__(self, percent: _Optional[str] = ..., units: _Optional[str] = ..., tuples: _Optional[str] = ..., box: _Optional[str] = ..., last_number_fallback: _Optional[bool] = ..., rel_tol: _Optional[float] = ..., timeout_s: _Optional[float] = ..., format: _Optional[str] = ..., decimal_comma: _Optional[str] = ..., rounded_decimals: _Optional[str] = ...) -> None: ...

class GradeRequest(_message.Message):
    __slots__ = ("prediction", "gold", "policy")
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    GOLD_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    prediction: str
    gold: str
    policy: GradingPolicy
    def __init__(self, prediction: _Optional[str] = ..., gold: _Optional[str] = ..., policy: _Optional[_Union[GradingPolicy, _Mapping]] = ...) -> None: ...

class GradeResponse(_message.Message):
    __slots__ = ("equivalent", "pred_answer", "gold_answer", "reason", "timed_out")
    EQUIVALENT_FIELD_NUMBER: _ClassVar[int]
    PRED_ANSWER_FIELD_NUMBER: _ClassVar[int]
    GOLD_ANSWER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    equivalent: bool
    pred_answer: str
    gold_answer: str
    reason: str
    timed_out: bool
    def __init__(self, equivalent: _Optional[bool] = ..., pred_answer: _Optional[str] = ..., gold_answer: _Optional[str] = ..., reason: _Optional[str] = ..., timed_out: _Optional[bool] = ...) -> None: ...

class GradeBatchRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[GradeRequest]
    def __init__(self, items: _Optional[_Iterable[_Union[GradeRequest, _Mapping]]] = ...) -> None: ...

class GradeBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[GradeResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[GradeResponse, _Mapping]]] = ...) -> None: ...

class ExtractRequest(_message.Message):
    __slots__ = ("text", "policy")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    text: str
    policy: GradingPolicy
    def __init__(self, text: _Optional[str] = ..., policy: _Optional[_Union[GradingPolicy, _Mapping]] = ...) -> None: ...

class ExtractResponse(_message.Message):
    __slots__ = ("answer", "method")
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    answer: str
    method: str
    def __init__(self, answer: _Optional[str] = ..., method: _Optional[str] = ...) -> None: ...

class RunProgramRequest(_message.Message):
    __slots__ = ("code", "stdin", "wall_time_s", "cpu_time_s", "memory_bytes", "output_bytes")
    CODE_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    WALL_TIME_S_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_S_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    code: str
    stdin: str
    wall_time_s: float
    cpu_time_s: float
    memory_bytes: int
    output_bytes: int
    def __init__(self, code: _Optional[str] = ..., stdin: _Optional[str] = ..., wall_time_s: _Optional[float] = ..., cpu_time_s: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., output_bytes: _Optional[int] = ...) -> None: ...

class RunProgramResponse(_message.Message):
    __slots__ = ("verdict", "exit_code", "stdout", "stderr", "wall_seconds", "detail")
    class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        VERDICT_UNSPECIFIED: _ClassVar[RunProgramResponse.Verdict]
        OK: _ClassVar[RunProgramResponse.Verdict]
        ERROR: _ClassVar[RunProgramResponse.Verdict]
        TIMEOUT: _ClassVar[RunProgramResponse.Verdict]
        MEMORY: _ClassVar[RunProgramResponse.Verdict]
        OUTPUT_LIMIT: _ClassVar[RunProgramResponse.Verdict]
        FORBIDDEN: _ClassVar[RunProgramResponse.Verdict]
    VERDICT_UNSPECIFIED: RunProgramResponse.Verdict
    OK: RunProgramResponse.Verdict
    ERROR: RunProgramResponse.Verdict
    TIMEOUT: RunProgramResponse.Verdict
    MEMORY: RunProgramResponse.Verdict
    OUTPUT_LIMIT: RunProgramResponse.Verdict
    FORBIDDEN: RunProgramResponse.Verdict
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    verdict: RunProgramResponse.Verdict
    exit_code: int
    stdout: str
    stderr: str
    wall_seconds: float
    detail: str
    def __init__(self, verdict: _Optional[_Union[RunProgramResponse.Verdict, str]] = ..., exit_code: _Optional[int] = ..., stdout: _Optional[str] = ..., stderr: _Optional[str] = ..., wall_seconds: _Optional[float] = ..., detail: _Optional[str] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("benchmark", "sampler", "k", "limit", "temperature", "max_tokens", "prompt_style", "seed", "policy")
    BENCHMARK_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_STYLE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    benchmark: str
    sampler: str
    k: int
    limit: int
    temperature: float
    max_tokens: int
    prompt_style: str
    seed: int
    policy: GradingPolicy
    def __init__(self, benchmark: _Optional[str] = ..., sampler: _Optional[str] = ..., k: _Optional[int] = ..., limit: _Optional[int] = ..., temperature: _Optional[float] = ..., max_tokens: _Optional[int] = ..., prompt_style: _Optional[str] = ..., seed: _Optional[int] = ..., policy: _Optional[_Union[GradingPolicy, _Mapping]] = ...) -> None: ...

class EvaluateProgress(_message.Message):
    __slots__ = ("done", "total", "accuracy")
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    done: int
    total: int
    accuracy: float
    def __init__(self, done: _Optional[int] = ..., total: _Optional[int] = ..., accuracy: _Optional[float] = ...) -> None: ...

class ItemRecord(_message.Message):
    __slots__ = ("id", "gold", "samples", "correct", "answers", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    GOLD_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    ANSWERS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    id: str
    gold: str
    samples: _containers.RepeatedScalarFieldContainer[str]
    correct: _containers.RepeatedScalarFieldContainer[bool]
    answers: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., gold: _Optional[str] = ..., samples: _Optional[_Iterable[str]] = ..., correct: _Optional[_Iterable[bool]] = ..., answers: _Optional[_Iterable[str]] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EvaluateResult(_message.Message):
    __slots__ = ("metrics", "items", "seconds")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.ScalarMap[str, float]
    items: _containers.RepeatedCompositeFieldContainer[ItemRecord]
    seconds: float
    def __init__(self, metrics: _Optional[_Mapping[str, float]] = ..., items: _Optional[_Iterable[_Union[ItemRecord, _Mapping]]] = ..., seconds: _Optional[float] = ...) -> None: ...

class EvaluateEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: EvaluateProgress
    result: EvaluateResult
    def __init__(self, progress: _Optional[_Union[EvaluateProgress, _Mapping]] = ..., result: _Optional[_Union[EvaluateResult, _Mapping]] = ...) -> None: ...
