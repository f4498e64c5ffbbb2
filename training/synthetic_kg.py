"""Knowledge graphs with planted communities, for tests and seconds-long benchmark runs."""

from __future__ import annotations

import numpy as np

from training.kg_arrays import ENTITY, KGArrays


def community_kg(
    n_entities: int = 600,
    communities: int = 8,
    cold_share: float = 0.2,
    degree: int = 10,
    seed: int = 0,
) -> KGArrays:
    """Entities in communities: EELs mostly inside a community, the genre is the community,
    tags are drawn from the community's tags. A share of entities has no EELs (cold)."""
    rng = np.random.default_rng(seed)
    community = rng.integers(communities, size=n_entities)
    linked = np.flatnonzero(rng.random(n_entities) >= cold_share)
    members = [linked[community[linked] == c] for c in range(communities)]
    src = np.repeat(linked, degree // 2)
    inside = rng.random(len(src)) < 0.9
    dst = np.array(
        [
            rng.choice(members[community[s]]) if ok else rng.choice(linked)
            for s, ok in zip(src, inside, strict=True)
        ],
        dtype=np.int64,
    )
    keep = src != dst
    eel = np.unique(
        np.concatenate(
            [np.stack([src[keep], dst[keep]]), np.stack([dst[keep], src[keep]])], axis=1
        ),
        axis=1,
    )
    tags_per_community = 5
    tag = community * tags_per_community + rng.integers(tags_per_community, size=n_entities)
    return KGArrays(
        num_nodes={
            ENTITY: n_entities,
            "genre": communities,
            "tag": communities * tags_per_community,
        },
        eel=eel,
        eel_weight=np.ones(eel.shape[1], dtype=np.float32),
        concept_edges={
            ("genre", "genre"): np.stack([np.arange(n_entities), community]),
            ("tag", "tag"): np.stack([np.arange(n_entities), tag]),
        },
    )
