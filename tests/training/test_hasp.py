"""HASP invariants on a planted-community graph and on MovieLens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.hasp import (
    HaspParams,
    LinkGraph,
    MemoryModel,
    build_hasp,
    cut_fraction,
    estimate_bytes,
    random_parts,
)
from training.kg_arrays import EEL, ENTITY, KGArrays


def planted_kg(n_entities=2_000, linked_share=0.8, communities=16, degree=8, seed=0) -> KGArrays:
    """Entities in communities, EELs mostly inside them; the rest have concepts only."""
    rng = np.random.default_rng(seed)
    linked = rng.choice(n_entities, size=int(linked_share * n_entities), replace=False)
    community = rng.integers(communities, size=len(linked))
    src = np.repeat(np.arange(len(linked)), degree // 2)
    same = rng.random(len(src)) < 0.9
    members = [np.flatnonzero(community == c) for c in range(communities)]
    dst = np.where(
        same,
        np.array([rng.choice(members[community[s]]) for s in src], dtype=np.int64),
        rng.integers(len(linked), size=len(src)),
    )
    keep = src != dst
    eel = np.stack([linked[src[keep]], linked[dst[keep]]])
    eel = np.unique(np.concatenate([eel, eel[::-1]], axis=1), axis=1)
    genre = np.stack([np.arange(n_entities), rng.integers(12, size=n_entities)])
    tag = np.stack([np.repeat(np.arange(n_entities), 2), rng.integers(80, size=2 * n_entities)])
    return KGArrays(
        num_nodes={ENTITY: n_entities, "genre": 12, "tag": 80},
        eel=eel,
        eel_weight=np.ones(eel.shape[1], dtype=np.float32),
        concept_edges={("genre", "genre"): genre, ("tag", "tag"): tag},
    )


def budget_for(kg: KGArrays, n: int) -> int:
    """A budget that one n-th of the graph fits, with 10% slack for imbalance."""
    concepts = sum(v for t, v in kg.num_nodes.items() if t != ENTITY)
    edges = kg.eel.shape[1] + 2 * sum(e.shape[1] for e in kg.concept_edges.values())
    return estimate_bytes(kg.num_entities // n, concepts, edges // n, MemoryModel()) * 11 // 10


@pytest.fixture(scope="module")
def kg() -> KGArrays:
    return planted_kg()


@pytest.fixture(scope="module")
def hasp(kg):
    return build_hasp(kg, HaspParams(memory_budget_bytes=budget_for(kg, 4), seed=1))


def test_entities_partition_exactly(kg, hasp):
    ids = [s[ENTITY].global_id.numpy() for s in hasp.shards]
    together = np.concatenate(ids)
    assert len(together) == kg.num_entities == len(np.unique(together))


def test_every_shard_has_every_concept_node(kg, hasp):
    for shard in hasp.shards:
        for ctype in ("genre", "tag"):
            assert torch.equal(shard[ctype].global_id, torch.arange(kg.num_nodes[ctype]))


def test_part_sizes_within_five_percent(hasp):
    sizes = np.array([s[ENTITY].num_nodes for s in hasp.shards])
    assert hasp.manifest["n_shards"] == len(sizes) >= 2
    assert (sizes.max() - sizes.min()) / sizes.mean() <= 0.05


def test_cut_at_most_half_of_random(kg, hasp):
    m = hasp.manifest
    assert m["cut_eel_fraction"] <= 0.5 * m["random_cut_eel_fraction"]
    rand = cut_fraction(random_parts(kg.num_entities, m["n_shards"], 5), kg.eel)
    assert m["random_cut_eel_fraction"] == pytest.approx(rand, abs=0.05)


def test_edges_are_local_and_complete_for_concepts(kg, hasp):
    concept_total = 0
    for shard in hasp.shards:
        n = shard[ENTITY].num_nodes
        ei = shard[ENTITY, EEL, ENTITY].edge_index
        assert ei.numel() == 0 or int(ei.max()) < n
        for et in shard.edge_types:
            if et[1] != EEL:
                concept_total += shard[et].edge_index.shape[1]
    # every entity keeps all its concept edges (semantic preservation)
    assert concept_total == sum(e.shape[1] for e in kg.concept_edges.values())


def test_each_shard_holds_exactly_its_parts_edges_in_graph_order(kg):
    params = HaspParams(memory_budget_bytes=budget_for(kg, 4), sample_caps={"tag": 30}, seed=3)
    out = build_hasp(kg, params)
    parts = np.empty(kg.num_entities, dtype=np.int64)
    for k, shard in enumerate(out.shards):
        parts[shard[ENTITY].global_id.numpy()] = k
    for k, shard in enumerate(out.shards):
        ids = shard[ENTITY].global_id.numpy()
        mine = (parts[kg.eel[0]] == k) & (parts[kg.eel[1]] == k)
        store = shard[ENTITY, EEL, ENTITY]
        np.testing.assert_array_equal(ids[store.edge_index.numpy()], kg.eel[:, mine])
        np.testing.assert_array_equal(store.edge_weight.numpy(), kg.eel_weight[mine])
        for (relation, ctype), edges in kg.concept_edges.items():
            kept = shard[ctype].global_id.numpy()
            want = edges[:, (parts[edges[0]] == k) & np.isin(edges[1], kept)]
            got = shard[ENTITY, relation, ctype].edge_index.numpy()
            np.testing.assert_array_equal(np.stack([ids[got[0]], kept[got[1]]]), want)


def test_memory_budget_picks_n_as_multiple_of_devices(kg):
    budget = budget_for(kg, 3)
    one = build_hasp(kg, HaspParams(memory_budget_bytes=budget, device_count=1))
    two = build_hasp(kg, HaspParams(memory_budget_bytes=budget, device_count=2))
    assert one.manifest["n_shards"] >= 3 and two.manifest["n_shards"] % 2 == 0
    for plan in (one, two):
        assert max(s["estimated_bytes"] for s in plan.manifest["shards"]) <= budget


def test_sampling_respects_caps(kg):
    out = build_hasp(kg, HaspParams(memory_budget_bytes=budget_for(kg, 2), sample_caps={"tag": 10}))
    for shard in out.shards:
        assert shard["tag"].num_nodes == 10 and shard["genre"].num_nodes == 12
        assert int(shard[ENTITY, "tag", "tag"].edge_index[1].max()) < 10


def test_same_seed_same_shards(kg):
    params = HaspParams(memory_budget_bytes=budget_for(kg, 4), sample_caps={"tag": 20}, seed=9)
    a, b = build_hasp(kg, params), build_hasp(kg, params)
    assert a.manifest == b.manifest
    for x, y in zip(a.shards, b.shards, strict=True):
        for key, store in x.to_dict().items():
            for attr, value in store.items():
                assert (
                    torch.equal(value, y.to_dict()[key][attr])
                    if torch.is_tensor(value)
                    else value == y.to_dict()[key][attr]
                )


def test_no_eels_is_an_even_split():
    kg = planted_kg(n_entities=100, linked_share=0.0)
    parts = LinkGraph.of(kg.num_entities, kg.eel).parts(4, seed=0)
    assert np.bincount(parts).tolist() == [25, 25, 25, 25]


def test_single_entity_and_too_many_shards():
    kg = planted_kg(n_entities=1, linked_share=0.0)
    out = build_hasp(kg, HaspParams())
    assert out.manifest["n_shards"] == 1 and out.manifest["cut_eel_fraction"] == 0.0
    with pytest.raises(ValueError, match="4 shards for 1 entities"):
        LinkGraph.of(1, kg.eel).parts(4, seed=0)


def test_budget_too_small_for_concepts(kg):
    with pytest.raises(ValueError, match="concept nodes alone"):
        build_hasp(kg, HaspParams(memory_budget_bytes=1_000))
    with pytest.raises(ValueError, match="sample_caps names node type 'entity'"):
        build_hasp(kg, HaspParams(sample_caps={ENTITY: 3}))


def test_movielens_shards(movielens_graph):
    from training.kg_arrays import kg_arrays

    kg = kg_arrays(movielens_graph["nodes"].toArrow(), movielens_graph["edges"].toArrow())
    assert kg.num_entities == 9_742 and set(kg.concept_types) == {"genre", "tag"}
    out = build_hasp(
        kg, HaspParams(memory_budget_bytes=budget_for(kg, 4), sample_caps={"tag": 500})
    )
    m = out.manifest
    ids = np.concatenate([s[ENTITY].global_id.numpy() for s in out.shards])
    assert np.array_equal(np.sort(ids), np.arange(kg.num_entities))
    sizes = np.array([s[ENTITY].num_nodes for s in out.shards])
    assert m["n_shards"] >= 4 and (sizes.max() - sizes.min()) / sizes.mean() <= 0.05
    assert m["cut_eel_fraction"] <= 0.5 * m["random_cut_eel_fraction"]
    assert all(s["genre"].num_nodes == 19 and s["tag"].num_nodes == 500 for s in out.shards)
