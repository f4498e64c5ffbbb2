"""EELs typed by their ends' domains: read from the graph's nodes, carried by the shards,
typed by shard_graph only for a variant that asks for it, and trained on."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from training.hasp import build_shards
from training.kg_arrays import EEL, ENTITY, kg_arrays
from training.shard_graph import CROSS_DOMAIN_EEL, domain_eel, domain_relations, shard_graph
from training.variants import Variant

# entities 0, 1 music; 2, 3 live; 4 no domain. EELs: 0-1 (music), 2-3 (live),
# 1-2 (across), 3-4 (an end without a domain)
NODES = pa.table(
    {
        "node_id": [0, 1, 2, 3, 4, 0],
        "node_type": [ENTITY] * 5 + ["genre"],
        "key": ["a", "b", "c", "d", "e", "rock"],
        "domain": ["music", "music", "live", "live", None, None],
    }
)
PAIRS = [(0, 1), (2, 3), (1, 2), (3, 4)]
EDGES = pa.table(
    {
        "src": [s for a, b in PAIRS for s in (a, b)] + [0, 2],
        "dst": [d for a, b in PAIRS for d in (b, a)] + [0, 0],
        "src_type": [ENTITY] * 10,
        "dst_type": [ENTITY] * 8 + ["genre"] * 2,
        "relation": [EEL] * 8 + ["genre"] * 2,
        "weight": [1.0] * 10,
    }
)


def test_domains_come_from_the_nodes_table():
    kg = kg_arrays(NODES, EDGES)
    assert kg.domains == ("live", "music")
    assert kg.entity_domain.tolist() == [1, 1, 0, 0, -1]
    # views of the graph keep them
    assert kg.without_eels(np.array([[0], [1]])).entity_domain is kg.entity_domain
    assert kg_arrays(NODES.drop_columns(["domain"]), EDGES).entity_domain is None


def test_eels_are_typed_by_domain_only_where_the_model_asks():
    kg = kg_arrays(NODES, EDGES)
    (shard,) = build_shards(kg, np.zeros(5, dtype=np.int64), 1, {}, 0)
    features = {"genre": torch.ones(1, 4)}
    typed = [EEL, *domain_relations(kg.domains), "genre"]
    assert typed[1:4] == [domain_eel("live"), domain_eel("music"), CROSS_DOMAIN_EEL]
    g = shard_graph(shard, features, typed, val_share=0.0, seed=0)
    kinds = {}
    for (s, d), t in zip(g.edge_index.t().tolist(), g.edge_type.tolist(), strict=True):
        if d < 5 and s < 5:
            kinds[(min(s, d), max(s, d))] = typed[t]
    assert kinds == {
        (0, 1): domain_eel("music"),
        (2, 3): domain_eel("live"),
        (1, 2): CROSS_DOMAIN_EEL,
        (3, 4): EEL,
    }
    plain = shard_graph(shard, features, [EEL, "genre"], val_share=0.0, seed=0)
    assert torch.equal(plain.edge_index, g.edge_index)
    eel_messages = plain.edge_index[0] < 5
    assert (plain.edge_type[eel_messages] == 0).all()
    assert domain_relations(("music",)) == []  # one domain: nothing to tell apart


def test_variant_names():
    v = Variant.parse("sage_domain_eels_no_pretrain")
    assert (v.kind, v.pretrained, v.domain_eels) == ("sage", False, True)
    assert not Variant.parse("semantic").domain_eels
