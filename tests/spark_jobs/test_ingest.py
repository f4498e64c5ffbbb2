"""Readers and validation: MovieLens counts, generic files, quarantine reasons."""

from __future__ import annotations

from collections import defaultdict

import pandas as pd
import pytest

from spark_jobs import constants as C
from spark_jobs.ingest import ingest
from spark_jobs.readers import NO_GENRE, read_generic, read_movielens
from spark_jobs.synthetic import SyntheticSpec, generate, synthetic_inputs
from spark_jobs.validation import reason_counts


def test_movielens_counts(spark, movielens, tmp_path):
    raw = read_movielens(spark, movielens, staging=tmp_path)
    out = ingest(raw, "ml")
    # every rating, and each tagging act once (3,683 tags given in 3,423 acts: a user's
    # tags on a movie at one time are one act, so none is quarantined as a repeat)
    events = dict(out.interactions.groupBy(C.EVENT).count().collect())
    assert events == {"rating": 100_836, "tag": 3_423}
    assert out.catalog.count() == 9_742
    assert out.quarantine.count() == 0
    genres = {
        r[0]
        for r in out.concepts.where(f"{C.RELATION} = 'genre'")
        .select(C.CONCEPT)
        .distinct()
        .collect()
    }
    # 19 genres become concepts; the 20th label is MovieLens's "no genres" marker.
    raw_labels = {
        g
        for r in raw.items.sparkSession.read.option("header", True)
        .csv(str(movielens / "movies.csv"))
        .select("genres")
        .collect()
        for g in r[0].split("|")
    }
    assert len(raw_labels) == 20 and NO_GENRE in raw_labels
    assert genres == {g.lower() for g in raw_labels - {NO_GENRE}}
    relations = {r[0] for r in out.concepts.select(C.RELATION).distinct().collect()}
    assert relations == {"genre", "tag"}


def test_a_bad_tagging_row_is_quarantined_with_its_line(spark, tmp_path):
    """A tags.csv row with an unparseable time and one naming an unknown movie are
    quarantined with their lines; the good tagging act is kept."""
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,Heat (1995),Crime\n")
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n7,1,4.0,964982703\n")
    (tmp_path / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n"
        "7,1,heist,964982800\n7,1,l.a.,964982800\n7,1,pacino,soon\n8,99,noir,964982900\n"
    )
    out = ingest(read_movielens(spark, tmp_path, staging=tmp_path / "staging"), "ml")
    events = sorted((r[C.EVENT], r[C.USER_ID]) for r in out.interactions.collect())
    assert events == [("rating", "7"), ("tag", "7")]  # heist and l.a.: one act
    bad = sorted(
        (r[C.SOURCE], r[C.LINE], r[C.REASON].split(":")[0]) for r in out.quarantine.collect()
    )
    interactions = f"{tmp_path / 'ratings.csv'}, {tmp_path / 'tags.csv'}"
    concepts = f"{tmp_path / 'movies.csv'}, {tmp_path / 'tags.csv'}"
    # the unknown movie's row is refused twice: as a tagging act and as its tag concept
    assert bad == sorted(
        [
            (interactions, 4, "unparseable ts"),
            (interactions, 5, "unknown item_id"),
            (concepts, 5, "unknown item_id"),
        ]
    )


@pytest.fixture
def generic_files(tmp_path):
    pd.DataFrame(
        {
            "user_id": ["u1", "u1", "", "u2", "u3", "u4", "u5"],
            "item_id": ["a", "b", "a", "zzz", "a", "b", "a"],
            "event": ["view"] * 7,
            "weight": ["1", "2.5", "1", "1", "-3", "nan", "1"],
            "ts": [
                "2024-01-01T00:00:00",
                "1704153600",
                "1704153600",
                "1704153600",
                "1704153600",
                "1704153600",
                "yesterday",
            ],
        }
    ).to_csv(tmp_path / "interactions.csv", index=False)
    pd.DataFrame(
        {
            "item_id": ["a", "b", "a", "ghost", None],
            "relation": ["genre", "genre", "tag", "genre", "genre"],
            "concept": ["Drama", " drama ", "Classic", "x", "y"],
        }
    ).to_parquet(tmp_path / "concepts.parquet")
    pd.DataFrame(
        {"item_id": ["a", "b", "b", "c"], "domain": ["m"] * 4, "title": ["A", "B", "B2", "C"]}
    ).to_csv(tmp_path / "items.csv", index=False)
    return tmp_path


def test_generic_reader_quarantines_bad_rows(spark, generic_files):
    raw = read_generic(
        spark,
        generic_files / "interactions.csv",
        generic_files / "concepts.parquet",
        generic_files / "items.csv",
        staging=generic_files / "staging",
    )
    out = ingest(raw, "b1")
    good = sorted((r[C.USER_ID], r[C.ITEM_ID], r[C.WEIGHT]) for r in out.interactions.collect())
    assert good == [("u1", "a", 1.0), ("u1", "b", 2.5)]
    reasons = {r[C.REASON].split(":")[0] for r in out.quarantine.collect()}
    assert reasons == {
        "missing user_id",
        "unknown item_id",
        "negative weight",
        "weight is not a number",
        "unparseable ts",
        "duplicate item_id",
        "missing item_id",
    }
    # every input row is either clean or quarantined: nothing is lost
    rejected: dict[str, int] = defaultdict(int)
    for src, _, n in reason_counts(out.quarantine):
        rejected[src] += n
    assert out.interactions.count() + rejected[raw.interactions_source] == 7
    assert len(rejected) == 3  # interactions, items and concepts each rejected something
    concepts = {(r[C.ITEM_ID], r[C.RELATION], r[C.CONCEPT]) for r in out.concepts.collect()}
    assert concepts == {("a", "genre", "drama"), ("b", "genre", "drama"), ("a", "tag", "classic")}
    row = out.quarantine.where(f"{C.REASON} LIKE 'unparseable%'").first()
    assert "yesterday" in row[C.ROW] and row[C.BATCH_ID] == "b1"


def test_missing_file_and_column_are_named(spark, generic_files, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_generic(
            spark, tmp_path / "nope.csv", generic_files / "concepts.parquet", staging=tmp_path
        )
    pd.DataFrame({"user": ["u"], "item_id": ["a"], "ts": ["1"]}).to_csv(
        tmp_path / "bad.csv", index=False
    )
    with pytest.raises(ValueError, match=r"bad.csv lacks column\(s\) \['user_id'\]"):
        read_generic(
            spark, tmp_path / "bad.csv", generic_files / "concepts.parquet", staging=tmp_path
        )


def test_synthetic_is_seeded_and_has_cold_items():
    spec = SyntheticSpec(n_users=200, n_items=300, n_interactions=5_000, seed=3)
    a, b = generate(spec), generate(spec)
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x, y)
    interactions, items, concepts = a
    engaged = set(interactions[C.ITEM_ID])
    cold = set(items[C.ITEM_ID]) - engaged
    assert len(cold) >= int(spec.cold_item_share * spec.n_items)
    assert set(concepts[C.RELATION]) == {"genre", "tag", "creator"}
    assert set(concepts[C.ITEM_ID]) == set(items[C.ITEM_ID])  # cold items still have concepts
    counts = interactions[C.ITEM_ID].value_counts()
    assert counts.iloc[0] > 20 * counts.median()  # power-law popularity: a heavy head


def test_synthetic_purchases_gather_on_favourite_topics():
    # deeper engagement follows taste, so the kinds of engagement carry signal (MUIRML's)
    spec = SyntheticSpec(n_users=400, n_items=600, n_interactions=40_000, seed=5)
    interactions, items, concepts = generate(spec)
    ok = interactions[C.EVENT].isin(["view", "like", "purchase"]) & interactions[C.USER_ID].notna()
    interactions = interactions[ok]
    genre = concepts[concepts[C.RELATION] == "genre"].drop_duplicates(C.ITEM_ID)
    rows = interactions.merge(genre[[C.ITEM_ID, C.CONCEPT]], on=C.ITEM_ID)
    # a user's favourite genre: the one most of their interactions are in
    top = rows.groupby([C.USER_ID, C.CONCEPT]).size().groupby(level=0).idxmax().map(lambda t: t[1])
    favourite = rows[C.CONCEPT].to_numpy() == top.loc[rows[C.USER_ID]].to_numpy()
    share = rows.assign(favourite=favourite).groupby(C.EVENT)["favourite"].mean()
    assert share["purchase"] > share["like"] > share["view"]
    shares = interactions[C.EVENT].value_counts(normalize=True)
    assert shares["view"] == pytest.approx(0.80, abs=0.02)
    assert shares["purchase"] == pytest.approx(0.05, abs=0.01)


def test_synthetic_bad_rows_are_quarantined(spark):
    spec = SyntheticSpec(n_users=100, n_items=100, n_interactions=2_000, bad_row_share=0.01)
    out = ingest(synthetic_inputs(spark, spec), "s")
    assert out.quarantine.count() == 20
    assert out.interactions.count() == 1_980


@pytest.fixture
def messy_files(tmp_path):
    """Interactions with two undecodable lines, a non-finite weight and a repeated row."""
    lines = [
        b"user_id,item_id,event,weight,ts",
        b"u1,a,view,1,1704153600",  # line 2
        b"u2,caf\xe9,view,1,1704153600",  # line 3: Latin-1, not UTF-8
        b"u3,a,view,Infinity,1704153600",  # line 4
        b"",  # a blank line is no row
        b"u1,a,view,1,1704153600",  # line 6: the same as line 2
        b"u4,caf\xea,view,1,1704153600",  # line 7: another Latin-1 value
        b'u5,b,"long\nview",1,1704153600',  # lines 8-9: one record
        b"u6,b,view,2,1704153601",  # line 10
    ]
    (tmp_path / "interactions.csv").write_bytes(b"\n".join(lines) + b"\n")
    items = "item_id,title\na,A\nb,B\ncafé,C1\ncafê,C2\n".encode("latin-1")
    (tmp_path / "items.csv").write_bytes(items)
    pd.DataFrame({"item_id": ["a"], "relation": ["genre"], "concept": ["x"]}).to_csv(
        tmp_path / "concepts.csv", index=False
    )
    return tmp_path


def read_messy(spark, folder, **options):
    return read_generic(
        spark,
        folder / "interactions.csv",
        folder / "concepts.csv",
        folder / "items.csv",
        staging=folder / "staging",
        **options,
    )


def test_bad_bytes_infinity_and_repeats_are_quarantined_with_their_lines(spark, messy_files):
    raw = read_messy(spark, messy_files)
    out = ingest(raw, "b1")
    quarantined = {
        r[C.LINE]: (r[C.REASON], r[C.ROW])
        for r in out.quarantine.where(f"{C.SOURCE} = '{raw.interactions_source}'").collect()
    }
    assert sorted(quarantined) == [3, 4, 6, 7]
    assert quarantined[3][0].startswith("bytes not valid in the encoding: ")
    assert "caf\\xe9" in quarantined[3][1] and "caf\\xea" in quarantined[7][1]  # not merged
    assert quarantined[4][0] == "weight is not finite"
    assert quarantined[6][0] == "duplicate row: same as line 2"
    clean = out.interactions.collect()
    assert sorted(r[C.USER_ID] for r in clean) == ["u1", "u5", "u6"]
    assert next(r for r in clean if r[C.USER_ID] == "u5")[C.EVENT] == "long\nview"
    assert len(clean) + len(quarantined) == 7  # rows in = rows kept + rows quarantined
    # the items file is Latin-1 too: both of its accented lines are quarantined, not merged
    items = out.quarantine.where(f"{C.SOURCE} = '{raw.items_source}'").collect()
    assert sorted(r[C.LINE] for r in items) == [4, 5]


def test_a_declared_encoding_reads_what_utf8_would_reject(spark, messy_files):
    out = ingest(read_messy(spark, messy_files, encoding="latin-1"), "b1")
    items = {r[C.ITEM_ID] for r in out.interactions.collect()}
    assert {"café", "cafê"} <= items  # two values, decoded, still two
    reasons = {r[C.REASON] for r in out.quarantine.collect()}
    assert not any(r.startswith("bytes not valid") for r in reasons)


def test_an_inbox_file_without_data_rows_is_quarantined_whole(spark, tmp_path):
    from spark_jobs.incremental import read_batch

    header_only = tmp_path / "interactions-empty.csv"
    header_only.write_text("user_id,item_id,ts\n")
    out = ingest(
        synthetic_inputs(spark, SyntheticSpec(n_users=10, n_items=20, n_interactions=50)), "s"
    )
    rows = read_batch(
        spark,
        {header_only: "e1"},
        out.interactions,
        out.catalog,
        out.concepts,
        out.quarantine,
        staging=tmp_path,
    )
    assert rows.interactions.count() == 0
    (row,) = rows.quarantine.collect()
    assert row[C.REASON] == "no data rows in file" and row[C.SOURCE] == str(header_only)
