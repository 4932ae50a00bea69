"""Request bodies: the API validates every input here, before any router logic runs."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Name = Field(min_length=1, max_length=200)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Login(Strict):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


class BulkAssign(Strict):
    alert_ids: list[str] = Field(min_length=1, max_length=1000)
    assignee: str | None = Field(default=None, max_length=100)


class BulkClose(Strict):
    alert_ids: list[str] = Field(min_length=1, max_length=1000)
    reason: str = Field(min_length=5, max_length=2000)
    suppress_days: int = Field(default=90, ge=0, le=3650)


class Transition(Strict):
    to: str = Field(min_length=1, max_length=40)
    reason: str = Field(default="", max_length=4000)


class Assign(Strict):
    assignee: str | None = Field(default=None, max_length=100)


class Note(Strict):
    text: str = Field(min_length=1, max_length=20000)


class TraceRequest(Strict):
    dataset: str = Field(min_length=1, max_length=200)
    account: str | None = Field(default=None, min_length=1, max_length=200)
    txn_id: str | None = Field(default=None, min_length=1, max_length=200)
    direction: Literal["forward", "backward"] = "forward"
    method: Literal["fifo", "proportional"] = "fifo"
    max_hops: int = Field(default=6, ge=1, le=10)
    hop_window: str = Field(default="72h", pattern=r"^[1-9][0-9]{0,4}(s|m|h|d)$")
    min_amount: float = Field(default=100.0, ge=0, le=1e15)
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    title: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _one_start(self) -> TraceRequest:
        if (self.account is None) == (self.txn_id is None):
            raise ValueError("give exactly one of account or txn_id")
        if self.start_time and self.end_time and self.end_time < self.start_time:
            raise ValueError("end_time is before start_time")
        return self


class DraftReport(Strict):
    format: Literal["camlmac_bstr", "goaml"] = "camlmac_bstr"
    narrative: str = Field(min_length=1, max_length=20000)


class Reject(Strict):
    reason: str = Field(min_length=5, max_length=4000)


class LargeValue(Strict):
    dataset: str = Field(min_length=1, max_length=200)
    date: dt.date


class Reveal(Strict):
    dataset: str = Field(min_length=1, max_length=200)
    field: Literal["name", "id_number", "phone", "address", "uscc"]
    token: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=5, max_length=2000)


class NewUser(Strict):
    username: str = Field(min_length=2, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=10, max_length=1000)
    role: Literal["analyst", "senior", "admin", "auditor", "supervisor"]
    display_name: str | None = Field(default=None, max_length=200)
