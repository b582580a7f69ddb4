from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HeldUser(_message.Message):
    __slots__ = ("user_id", "display_name", "reporters", "last_report_at", "last_review_at")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    REPORTERS_FIELD_NUMBER: _ClassVar[int]
    LAST_REPORT_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_REVIEW_AT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    display_name: str
    reporters: int
    last_report_at: float
    last_review_at: float
    def __init__(self, user_id: _Optional[str] = ..., display_name: _Optional[str] = ..., reporters: _Optional[int] = ..., last_report_at: _Optional[float] = ..., last_review_at: _Optional[float] = ...) -> None: ...

class ListHeldRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListHeldResponse(_message.Message):
    __slots__ = ("users", "review_threshold")
    USERS_FIELD_NUMBER: _ClassVar[int]
    REVIEW_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[HeldUser]
    review_threshold: int
    def __init__(self, users: _Optional[_Iterable[_Union[HeldUser, _Mapping]]] = ..., review_threshold: _Optional[int] = ...) -> None: ...

class UserReport(_message.Message):
    __slots__ = ("reporter", "call_id", "reason", "created_at", "counts")
    REPORTER_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    reporter: str
    call_id: str
    reason: str
    created_at: float
    counts: bool
    def __init__(self, reporter: _Optional[str] = ..., call_id: _Optional[str] = ..., reason: _Optional[str] = ..., created_at: _Optional[float] = ..., counts: _Optional[bool] = ...) -> None: ...

class Review(_message.Message):
    __slots__ = ("reviewer", "reviewed_at", "note", "reports_cleared")
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    REVIEWED_AT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    REPORTS_CLEARED_FIELD_NUMBER: _ClassVar[int]
    reviewer: str
    reviewed_at: float
    note: str
    reports_cleared: int
    def __init__(self, reviewer: _Optional[str] = ..., reviewed_at: _Optional[float] = ..., note: _Optional[str] = ..., reports_cleared: _Optional[int] = ...) -> None: ...

class ListReportsRequest(_message.Message):
    __slots__ = ("user_id", "limit")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    limit: int
    def __init__(self, user_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListReportsResponse(_message.Message):
    __slots__ = ("user", "held", "reports", "reviews")
    USER_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    REVIEWS_FIELD_NUMBER: _ClassVar[int]
    user: HeldUser
    held: bool
    reports: _containers.RepeatedCompositeFieldContainer[UserReport]
    reviews: _containers.RepeatedCompositeFieldContainer[Review]
    def __init__(self, user: _Optional[_Union[HeldUser, _Mapping]] = ..., held: _Optional[bool] = ..., reports: _Optional[_Iterable[_Union[UserReport, _Mapping]]] = ..., reviews: _Optional[_Iterable[_Union[Review, _Mapping]]] = ...) -> None: ...

class ClearHoldRequest(_message.Message):
    __slots__ = ("user_id", "note")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    note: str
    def __init__(self, user_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class ClearHoldResponse(_message.Message):
    __slots__ = ("review",)
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    review: Review
    def __init__(self, review: _Optional[_Union[Review, _Mapping]] = ...) -> None: ...
