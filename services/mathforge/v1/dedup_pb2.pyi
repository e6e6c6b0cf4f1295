from mathforge.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DedupRequest(_message.Message):
    __slots__ = ("documents", "check_contamination")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    CHECK_CONTAMINATION_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.Document]
    check_contamination: bool
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.Document, _Mapping]]] = ..., check_contamination: _Optional[bool] = ...) -> None: ...

class ContaminationMatch(_message.Message):
    __slots__ = ("benchmark", "item", "start", "end", "span")
    BENCHMARK_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SPAN_FIELD_NUMBER: _ClassVar[int]
    benchmark: str
    item: str
    start: int
    end: int
    span: str
    def __init__(self, benchmark: _Optional[str] = ..., item: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., span: _Optional[str] = ...) -> None: ...

class DocumentVerdict(_message.Message):
    __slots__ = ("id", "exact_duplicate_of", "near_duplicate_of", "jaccard", "contaminated", "matches", "inserted", "already_inserted")
    ID_FIELD_NUMBER: _ClassVar[int]
    EXACT_DUPLICATE_OF_FIELD_NUMBER: _ClassVar[int]
    NEAR_DUPLICATE_OF_FIELD_NUMBER: _ClassVar[int]
    JACCARD_FIELD_NUMBER: _ClassVar[int]
    CONTAMINATED_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    INSERTED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_INSERTED_FIELD_NUMBER: _ClassVar[int]
    id: str
    exact_duplicate_of: str
    near_duplicate_of: str
    jaccard: float
    contaminated: bool
    matches: _containers.RepeatedCompositeFieldContainer[ContaminationMatch]
    inserted: bool
    already_inserted: bool
    def __init__(self, id: _Optional[str] = ..., exact_duplicate_of: _Optional[str] = ..., near_duplicate_of: _Optional[str] = ..., jaccard: _Optional[float] = ..., contaminated: _Optional[bool] = ..., matches: _Optional[_Iterable[_Union[ContaminationMatch, _Mapping]]] = ..., inserted: _Optional[bool] = ..., already_inserted: _Optional[bool] = ...) -> None: ...

class DedupResponse(_message.Message):
    __slots__ = ("verdicts",)
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    verdicts: _containers.RepeatedCompositeFieldContainer[DocumentVerdict]
    def __init__(self, verdicts: _Optional[_Iterable[_Union[DocumentVerdict, _Mapping]]] = ...) -> None: ...

class DecontaminateRequest(_message.Message):
    __slots__ = ("documents", "mode")
    class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODE_VERDICT: _ClassVar[DecontaminateRequest.Mode]
        MODE_CUT: _ClassVar[DecontaminateRequest.Mode]
    MODE_VERDICT: DecontaminateRequest.Mode
    MODE_CUT: DecontaminateRequest.Mode
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[_common_pb2.Document]
    mode: DecontaminateRequest.Mode
    def __init__(self, documents: _Optional[_Iterable[_Union[_common_pb2.Document, _Mapping]]] = ..., mode: _Optional[_Union[DecontaminateRequest.Mode, str]] = ...) -> None: ...

class DecontaminationResult(_message.Message):
    __slots__ = ("id", "contaminated", "matches", "cleaned_text")
    ID_FIELD_NUMBER: _ClassVar[int]
    CONTAMINATED_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    CLEANED_TEXT_FIELD_NUMBER: _ClassVar[int]
    id: str
    contaminated: bool
    matches: _containers.RepeatedCompositeFieldContainer[ContaminationMatch]
    cleaned_text: str
    def __init__(self, id: _Optional[str] = ..., contaminated: _Optional[bool] = ..., matches: _Optional[_Iterable[_Union[ContaminationMatch, _Mapping]]] = ..., cleaned_text: _Optional[str] = ...) -> None: ...

class DecontaminateResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[DecontaminationResult]
    def __init__(self, results: _Optional[_Iterable[_Union[DecontaminationResult, _Mapping]]] = ...) -> None: ...

class BenchmarkFile(_message.Message):
    __slots__ = ("name", "path")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class LoadBenchmarksRequest(_message.Message):
    __slots__ = ("files", "replace")
    FILES_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[BenchmarkFile]
    replace: bool
    def __init__(self, files: _Optional[_Iterable[_Union[BenchmarkFile, _Mapping]]] = ..., replace: _Optional[bool] = ...) -> None: ...

class LoadBenchmarksResponse(_message.Message):
    __slots__ = ("items", "ngrams", "short_texts")
    class ItemsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NGRAMS_FIELD_NUMBER: _ClassVar[int]
    SHORT_TEXTS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.ScalarMap[str, int]
    ngrams: int
    short_texts: int
    def __init__(self, items: _Optional[_Mapping[str, int]] = ..., ngrams: _Optional[int] = ..., short_texts: _Optional[int] = ...) -> None: ...

class DedupStats(_message.Message):
    __slots__ = ("documents", "store", "num_perm", "bands", "rows", "threshold", "shingle_size", "benchmark_ngrams", "benchmark_items", "store_bytes")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    NUM_PERM_FIELD_NUMBER: _ClassVar[int]
    BANDS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SHINGLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    BENCHMARK_NGRAMS_FIELD_NUMBER: _ClassVar[int]
    BENCHMARK_ITEMS_FIELD_NUMBER: _ClassVar[int]
    STORE_BYTES_FIELD_NUMBER: _ClassVar[int]
    documents: int
    store: str
    num_perm: int
    bands: int
    rows: int
    threshold: float
    shingle_size: int
    benchmark_ngrams: int
    benchmark_items: int
    store_bytes: int
    def __init__(self, documents: _Optional[int] = ..., store: _Optional[str] = ..., num_perm: _Optional[int] = ..., bands: _Optional[int] = ..., rows: _Optional[int] = ..., threshold: _Optional[float] = ..., shingle_size: _Optional[int] = ..., benchmark_ngrams: _Optional[int] = ..., benchmark_items: _Optional[int] = ..., store_bytes: _Optional[int] = ...) -> None: ...
