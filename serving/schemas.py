"""The service's requests and responses, declared once: validation, errors and OpenAPI.

Requests are strict: JSON types are not coerced (``"10"``, ``1.9`` and ``true`` are not
integers), numbers are finite and bounded, unknown fields are refused, and bodies are
parsed by pydantic's JSON parser, which bounds nesting depth. A refusal is a 422 whose
body names each field (:class:`Error`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from serving.retrieval import EVENT_WEIGHTS

MAX_K = 1000
MAX_HISTORY = 1000
MAX_BATCH_IDS = 1000
MAX_EXCLUDE = 1000
MAX_PRIOR = 10.0  # |popularity-prior weight|: log-degrees are at most about 15
MAX_WEIGHT = 1e6

ItemId = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Event = Literal[tuple(EVENT_WEIGHTS)]  # type: ignore[valid-type]
K = Annotated[int, Field(ge=1, le=MAX_K, description="How many results.")]
Prior = Annotated[
    float | None,
    Field(
        ge=-MAX_PRIOR,
        le=MAX_PRIOR,
        description="Popularity-prior weight (absent: the model's validated one; negative "
        "favours the long tail).",
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class Filters(Strict):
    domain: str | None = Field(None, max_length=128, description="Only items of this domain.")
    exclude: list[ItemId] = Field(
        [], max_length=MAX_EXCLUDE, description="Item ids left out of the results."
    )


class HistoryEntry(Strict):
    item_id: ItemId
    weight: float = Field(1.0, ge=0, le=MAX_WEIGHT, description="Multiplies the event weight.")
    event: Event = Field("view", description=f"One of {', '.join(EVENT_WEIGHTS)}.")


class RecommendRequest(Filters):
    history: list[HistoryEntry] = Field(min_length=1, max_length=MAX_HISTORY)
    k: K = 10
    strategy: Literal["mean", "multi_seed", "e2e", "neural"] = Field(
        "mean",
        description="`mean`: one query, the weighted mean of the history; `multi_seed`: one "
        "search per heavy recent item, merged; `e2e`: the `mean` search's candidates "
        "re-scored by the end-to-end ranker (409 when none is published); `neural`: the "
        "learned multi-behaviour relevance searched over the index's graph (409 when no "
        "relevance model is published for the served embeddings).",
    )
    seeds: int = Field(8, ge=1, le=64, description="multi_seed: the items that seed searches.")
    prior: Prior = None


class SimilarBatchRequest(Filters):
    item_ids: list[ItemId] = Field(min_length=1, max_length=MAX_BATCH_IDS)
    k: K = 10
    prior: Prior = None
    explain: bool = Field(False, description="Add the concepts each result shares.")


class SimilarQuery(Filters):
    """The query string of ``GET /v1/items/{item_id}/similar`` (``exclude`` comma-separated)."""

    k: K = 10
    prior: Prior = None
    explain: bool = False


class ReloadRequest(Strict):
    version: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$",
        description="A version folder to serve and pin (absent: LATEST, and unpin).",
    )


class Result(BaseModel):
    item_id: str
    score: float = Field(description="similarity + prior: what the results are sorted by.")
    similarity: float = Field(description="Inner product of the two embeddings.")
    prior: float = Field(description="Popularity prior: weight × log(1 + the item's degree).")
    title: str | None = None
    domain: str | None = None
    ranker_score: float | None = Field(
        None,
        description="Strategy `e2e`: the end-to-end ranker's score, what the results are "
        "sorted by (absent for an item the ranker has not seen, ranked last).",
    )
    relevance: float | None = Field(
        None,
        description="Strategy `neural`: the learned relevance (the scenario's weighted sum of "
        "behaviour probabilities), what the results are sorted by.",
    )
    shared_concepts: list[str] | None = Field(
        None, description="With explain: concepts the query and the result share."
    )


class SimilarResponse(BaseModel):
    item_id: str
    index_version: str
    results: list[Result]


class BatchEntry(BaseModel):
    item_id: str
    results: list[Result] | None = None
    error: str | None = Field(None, description="Why this id has no results (unknown id).")


class SimilarBatchResponse(BaseModel):
    index_version: str
    items: list[BatchEntry]


class RecommendResponse(BaseModel):
    strategy: str
    index_version: str
    ignored_unknown_items: list[str]
    results: list[Result]


class Health(BaseModel):
    status: str
    index_version: str
    entities: int
    pinned: bool = Field(description="An admin reload pinned this version.")
    neural_device: str | None = Field(
        None,
        description="Where strategy `neural` scores (`cpu` or `cuda[:N]`); null while no "
        "relevance model fits the served embeddings.",
    )


class ReloadResponse(BaseModel):
    previous_version: str
    index_version: str
    pinned: bool


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the field (`history.0.weight`), or ``.``")
    message: str


class Error(BaseModel):
    detail: str
    errors: list[FieldError] = []
