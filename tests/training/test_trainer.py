"""TransE, SemanticGNN training over HASP shards, data parallel and checkpoints."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
import torch

from tests.spark_cluster import free_port
from training import trainer
from training.baselines import concepts, itemcf, rp3
from training.checkpoint import Checkpoint, ModelSet, load_checkpoint
from training.device import pick_device
from training.distributed import Job, train_distributed
from training.hasp import HaspParams, build_hasp
from training.kg_arrays import EEL
from training.model import ModelConfig, SemanticGNN, build_model
from training.shard_graph import held_out_pairs, shard_graph
from training.synthetic_kg import community_kg
from training.trainer import TrainParams, auc, train
from training.transe import TransEParams, converged, train_transe
from training.validation import (
    BETA_GRID,
    GRID,
    NEW_SHARE,
    PRIOR_GRID,
    SHARE_GRID,
    calibrate,
    compare,
    set_calibration,
    validation_set,
)
from training.variants import Variant, concept_inputs

ROOT = Path(__file__).resolve().parents[2]
# CUDA where present, so a GPU machine runs these same checks on it; CPU in CI
DEVICE = pick_device()
CPU = torch.device("cpu")  # the data-parallel tests run gloo on CPU


@pytest.fixture(scope="module")
def kg():
    return community_kg(n_entities=800, communities=16)


@pytest.fixture(scope="module")
def transe(kg):
    return train_transe(kg, TransEParams(dim=16, epochs=200, batch_size=256, seed=0), DEVICE)


def test_transe_stops_when_its_loss_flattens_or_its_budget_is_spent(kg):
    params = TransEParams(dim=16, epochs=10_000, batch_size=256, min_improvement=0.05, patience=3)
    flat = train_transe(kg, params, DEVICE)
    assert flat.stopped == "converged" and len(flat.losses) < 10_000
    assert converged(flat.losses, 0.05, 3) and not converged(flat.losses[:-1], 0.05, 3)
    params = TransEParams(dim=16, epochs=10_000, batch_size=256, max_seconds=0.5)
    timed = train_transe(kg, params, DEVICE)
    assert timed.stopped == "time budget" and len(timed.losses) < 10_000


def test_transe_takes_larger_batches_not_more_steps(kg, monkeypatch):
    steps = []
    step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a: steps.append(1) or step(self))
    train_size = sum(e.shape[1] for e in kg.concept_edges.values()) * 9 // 10  # holdout 0.1
    train_transe(kg, TransEParams(dim=8, epochs=1, batch_size=16, max_steps_per_epoch=10**6), CPU)
    assert len(steps) >= train_size // 16 > 4  # uncapped: a step per 16 triples
    steps.clear()
    train_transe(kg, TransEParams(dim=8, epochs=2, batch_size=16, max_steps_per_epoch=4), CPU)
    assert len(steps) == 2 * 4
    with pytest.raises(ValueError, match="max_steps_per_epoch"):
        TransEParams(max_steps_per_epoch=0)


@pytest.fixture(scope="module")
def setup(kg, transe):
    shards = build_hasp(kg, HaspParams(memory_budget_bytes=10**9, device_count=4, seed=0)).shards
    relations = [EEL, *transe.relations]
    graphs = [
        shard_graph(s, transe.concept_embeddings, relations, 0.15, seed=k)
        for k, s in enumerate(shards)
    ]
    config = ModelConfig(
        num_entities=kg.num_entities, feature_dim=16, relations=tuple(relations), dim=32
    )
    return graphs, config


def test_auc_against_hand_values():
    assert auc(torch.tensor([3.0, 4.0]), torch.tensor([1.0, 2.0])) == 1.0
    assert auc(torch.tensor([1.0]), torch.tensor([1.0])) == 0.5  # a tie counts half
    assert auc(torch.tensor([2.0, 0.0]), torch.tensor([1.0])) == 0.5


def test_transe_learns_the_concepts(transe):
    # 16 genres and 80 tags to rank: a random ranking would give MRR about 0.21 and 0.06
    assert transe.mrr > 0.3 and transe.hits_at_10 > 0.6
    assert transe.losses[-1] < transe.losses[0]
    assert set(transe.concept_embeddings) == {"genre", "tag"}


@pytest.mark.parametrize("objective", ["bce", "sampled_softmax"])
def test_trained_model_separates_held_out_eels(setup, objective):
    graphs, config = setup
    params = TrainParams(epochs=40, lr=0.02, patience_steps=8 * 16, objective=objective)
    result = train(graphs, config, params, DEVICE)
    assert result.best_val_auc > 0.8
    assert result.curve[-1]["loss"] < result.curve[0]["loss"]


def test_patience_counts_optimizer_steps_in_whole_epochs(setup):
    """16 steps an epoch (4 shards, 4 batches each): a patience of 1 or 16 steps is one
    epoch after the best, 17 steps two."""
    graphs, config = setup
    for patience_steps, epochs_after_best in ((1, 1), (16, 1), (17, 2)):
        params = TrainParams(epochs=60, lr=0.05, patience_steps=patience_steps)
        result = train(graphs, config, params, CPU)
        assert result.curve[0]["steps"] == 16 and result.stopped == "patience"
        assert len(result.curve) == result.best_epoch + 1 + epochs_after_best
    with pytest.raises(ValueError, match="patience_steps"):
        TrainParams(patience_steps=0)


def test_clipped_steps_are_counted_and_change_the_update(setup):
    graphs, config = setup
    runs = {
        clip: train(graphs, config, TrainParams(epochs=2, clip_norm=clip), CPU)
        for clip in (0.0, 1e-6, 1e6)
    }
    assert [p["clipped_steps"] for p in runs[0.0].curve] == [0, 0]
    assert [p["clipped_steps"] for p in runs[1e-6].curve] == [p["steps"] for p in runs[1e-6].curve]
    assert [p["clipped_steps"] for p in runs[1e6].curve] == [0, 0]
    weight = "entity_id.weight"
    assert torch.equal(runs[1e6].state_dict[weight], runs[0.0].state_dict[weight])
    assert not torch.equal(runs[1e-6].state_dict[weight], runs[0.0].state_dict[weight])


def test_no_epoch_starts_that_would_end_past_the_time_budget(setup, monkeypatch):
    """A clock that ticks one second per reading: the first epoch reads it at its start,
    before validation and after it (ends at 3 s, took 2 s), so a 4.5 s budget stops before
    a second epoch that would end near 5 s, while 5.5 s lets it run."""
    graphs, config = setup
    runs = {}
    for budget in (4.5, 5.5, 0.0):
        clock = SimpleNamespace(perf_counter=itertools.count().__next__)
        monkeypatch.setattr(trainer, "time", clock)
        params = TrainParams(epochs=3, max_seconds=budget)
        runs[budget] = train(graphs, config, params, CPU)
    assert (len(runs[4.5].curve), runs[4.5].stopped) == (1, "time budget")
    assert (len(runs[5.5].curve), runs[5.5].stopped) == (2, "time budget")
    assert (len(runs[0.0].curve), runs[0.0].stopped) == (3, "epochs")  # 0: no budget
    with pytest.raises(ValueError, match="max_seconds"):
        TrainParams(max_seconds=-1)


@pytest.mark.parametrize("kind", ["gcn", "gat", "sage"])
def test_relational_baselines_train(setup, kind):
    graphs, config = setup
    baseline = dataclasses.replace(config, kind=kind)
    result = train(graphs, baseline, TrainParams(epochs=15, lr=0.02), DEVICE)
    assert result.best_val_auc > 0.7
    assert build_model(baseline)(graphs[0]).shape == (graphs[0].num_entities, config.dim)


def test_cold_entities_get_embeddings_from_concepts(setup, kg):
    graphs, config = setup
    result = train(graphs, config, TrainParams(epochs=25, lr=0.02), DEVICE)
    model = SemanticGNN(config)
    model.load_state_dict(result.state_dict)
    g = graphs[0]
    new = torch.zeros(g.num_entities, dtype=torch.bool)
    h = model(g, keep_id=new, keep_popularity=new).detach()  # every entity as if brand new
    genre = torch.from_numpy(kg.concept_edges[("genre", "genre")][1])[g.entity_global]
    h = torch.nn.functional.normalize(h, dim=-1)
    sim = h @ h.t()
    same = genre[:, None] == genre[None, :]
    off_diag = ~torch.eye(len(genre), dtype=torch.bool)
    assert sim[same & off_diag].mean() > sim[~same].mean() + 0.2


def test_two_processes_match_one(setup):
    graphs, config = setup
    params = TrainParams(epochs=3, shards_per_step=2)
    single = train(graphs, config, params, CPU)
    double = train_distributed(graphs, config, params, world_size=2)
    np.testing.assert_allclose(
        [p["loss"] for p in double.curve], [p["loss"] for p in single.curve], rtol=1e-4
    )
    for name, value in single.state_dict.items():
        # Adam divides by sqrt(v): float-order noise on near-zero gradients grows to ~1e-5
        torch.testing.assert_close(double.state_dict[name], value, rtol=1e-3, atol=1e-4)


def test_torchrun_two_processes_match_one(setup, tmp_path):
    """The documented entry point under the real launcher, two local ranks over gloo."""
    graphs, config = setup
    params = TrainParams(epochs=2, shards_per_step=2)
    Job(graphs, config, params).save(tmp_path / "job.pt")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
         "-m", "training.distributed", str(tmp_path / "job.pt"), str(tmp_path / "out.pt")],
        cwd=ROOT, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    launched = torch.load(tmp_path / "out.pt", weights_only=False)
    single = train(graphs, config, params, CPU)
    np.testing.assert_allclose(
        [p["loss"] for p in launched.curve], [p["loss"] for p in single.curve], rtol=1e-4
    )
    for name, value in single.state_dict.items():
        torch.testing.assert_close(launched.state_dict[name], value, rtol=1e-3, atol=1e-4)


def test_checkpoint_reproduces_embeddings(setup, transe, tmp_path):
    graphs, config = setup
    params = TrainParams(epochs=2)
    result = train(graphs, config, params, DEVICE)
    id_map = pa.table({"node_id": [0, 0], "node_type": ["entity", "genre"], "key": ["i0", "g"]})
    ckpt = Checkpoint(config, params, result, transe.concept_embeddings, id_map, {"revision": "t"})
    ckpt.save(tmp_path)
    again = load_checkpoint(tmp_path)
    assert again.config == config and again.lineage == {"revision": "t"}
    assert again.result.stopped == result.stopped == "epochs"
    assert again.id_map.equals(id_map)
    with pytest.raises(ValueError, match="Primary model 'deepwalk' must be a trained encoder"):
        ModelSet({"semantic": ckpt}, "deepwalk")
    with torch.no_grad():
        assert torch.equal(ckpt.model()(graphs[1]), again.model()(graphs[1]))


def test_a_checkpoint_of_another_version_is_read_or_named(setup, transe, tmp_path):
    graphs, config = setup
    params = TrainParams(epochs=1)
    result = train(graphs, config, params, DEVICE)
    id_map = pa.table({"node_id": [0], "node_type": ["entity"], "key": ["i0"]})
    Checkpoint(config, params, result, transe.concept_embeddings, id_map).save(tmp_path)
    meta_path = tmp_path / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    # a training parameter renamed since (``patience`` became ``patience_steps``): read
    meta["train"]["patience"] = 5
    meta_path.write_text(json.dumps(meta))
    assert load_checkpoint(tmp_path).params == params
    # a model field this version lacks, or lacking one it needs: named, not a TypeError
    meta["model"]["attention_kind"] = "gat"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"checkpoint at .* has \['attention_kind'\], which"):
        load_checkpoint(tmp_path)
    del meta["model"]["attention_kind"], meta["model"]["num_entities"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"lacks \['num_entities'\], which this version needs"):
        load_checkpoint(tmp_path)


def test_bad_inputs_are_named(setup, transe, kg):
    graphs, config = setup
    shards = build_hasp(kg, HaspParams(memory_budget_bytes=10**9, device_count=2)).shards
    with pytest.raises(ValueError, match="Shard relation 'tag' is not in the model's relations"):
        shard_graph(shards[0], transe.concept_embeddings, [EEL, "genre"], 0.1, seed=0)
    nan = {t: torch.full_like(e, float("nan")) for t, e in transe.concept_embeddings.items()}
    with pytest.raises(ValueError, match="contain NaN"):
        shard_graph(shards[0], nan, [EEL, *transe.relations], 0.1, seed=0)
    small = ModelConfig(num_entities=10, feature_dim=16, relations=config.relations, dim=32)
    with pytest.raises(ValueError, match="outside the model's 10 trained ids"):
        SemanticGNN(small)(graphs[0])
    with pytest.raises(ValueError, match="Model kind 'mlp' is not one of"):
        dataclasses.replace(config, kind="mlp")
    with pytest.raises(ValueError, match="shards_per_step"):
        train(graphs, config, TrainParams(shards_per_step=3), CPU, world_size=2)


def test_variants(transe):
    v = Variant.parse("semantic_no_pretrain")
    assert (v.kind, v.pretrained) == ("semantic", False)
    assert Variant.parse("gat").pretrained
    with pytest.raises(ValueError, match="Model variant 'transformer' is not one of"):
        Variant.parse("transformer")
    random = concept_inputs(transe.concept_embeddings, v, seed=0)
    for ctype, features in transe.concept_embeddings.items():
        assert random[ctype].shape == features.shape and not torch.equal(random[ctype], features)
    assert (
        concept_inputs(transe.concept_embeddings, Variant.parse("gcn"), 0)
        is transe.concept_embeddings
    )


def test_validation_comparison(kg, transe, setup):
    graphs, config = setup
    shards = build_hasp(kg, HaspParams(memory_budget_bytes=10**9, device_count=4, seed=0)).shards
    params = TrainParams(epochs=25, lr=0.02, val_share=0.15)
    # the setup fixture split each shard with seed k: train with the same split
    result = train(graphs, config, dataclasses.replace(params, seed=0), DEVICE)
    ckpt = Checkpoint(config, params, result, transe.concept_embeddings, pa.table({"k": [0]}))
    models = ModelSet({"semantic": ckpt}, "semantic")
    validation = validation_set(models, shards, kg)
    before = compare(models, validation)[0].map_at_k
    calibration = calibrate(models, validation, shards)
    chosen = calibration["semantic"]
    learned = float(ckpt.result.state_dict["popularity_weight"])
    assert chosen.learned_prior == learned  # not changed by calibrating
    set_calibration(models, calibration, validation, shards)
    state = ckpt.result.state_dict
    # stored as float32 tensors: a scale of 0.1 reads back as 0.10000000149
    assert (float(state["popularity_weight"]), float(state["residual_scale"])) == pytest.approx(
        (chosen.prior, chosen.scale)
    )
    # new items get their own prior weight, fitted on pseudo-new queries: a tenth of the
    # linked entities, each asked for all its EELs
    assert chosen.new_item_prior in (learned, *PRIOR_GRID)
    assert float(state["cold_prior_shift"]) == pytest.approx(chosen.new_item_prior - chosen.prior)
    # and the concept neighbours' share in their walk factors, from the same queries
    assert chosen.concept_share in SHARE_GRID
    assert float(state["concept_walk_share"]) == chosen.concept_share
    new = validation.new_items
    linked = np.unique(kg.eel[0])
    assert len(new.queries) == int(NEW_SHARE * len(linked))
    for q, relevant in zip(new.queries[:20].tolist(), new.relevant, strict=False):
        assert sorted(relevant.tolist()) == sorted(kg.eel[1, kg.eel[0] == q].tolist())
    rows = {r.name: r for r in compare(models, validation)}
    assert rows["semantic"].map_at_k >= before - 1e-6  # the trained readout is in the grid
    names = [
        "semantic", "popularity", "itemcf", "concepts", "popularity+concepts", "blend",
        "concept-knn", "rp3", "ease",
    ]  # fmt: skip
    assert list(rows) == names
    assert all(0.0 <= r.map_at_k <= 1.0 for r in rows.values())
    # the ItemCF family in one weighted pass and RP3β's grid over one walk: each as alone
    task, s = validation.task, validation.signals
    for name, scorer in (("itemcf", itemcf(s)), ("concepts", concepts(s))):
        assert rows[name].map_at_k == pytest.approx(task.map_at_k(scorer), abs=1e-7)
    (beta,) = rows["rp3"].weights
    alone = {b: task.map_at_k(rp3(s, b)) for b in BETA_GRID}
    assert rows["rp3"].map_at_k == pytest.approx(alone[beta], abs=1e-7) == max(alone.values())
    # on a planted-community graph the learned model must beat popularity by a margin
    assert rows["semantic"].map_at_k > rows["popularity"].map_at_k + 0.02
    assert rows["blend"].map_at_k >= rows["itemcf"].map_at_k  # a = 1, b = c = 0 is in the grid
    assert len(rows["blend"].weights) == 3 and len(rows["popularity+concepts"].weights) == 1
    assert len(rows["rp3"].weights) == len(rows["ease"].weights) == 1
    assert rows["concept-knn"].weights[0] in GRID


def test_deepwalk_never_walks_held_out_eels(kg, transe, monkeypatch):
    from training import variants

    shards = build_hasp(kg, HaspParams(memory_budget_bytes=10**9, device_count=4, seed=0)).shards
    params = TrainParams(val_share=0.15)
    walked = {}

    def capture(graph, walk_params, device, progress=None):
        walked["eel"] = graph.eel
        return torch.zeros(graph.num_entities, walk_params.dim)

    monkeypatch.setattr(variants, "train_deepwalk", capture)
    table = variants.train_variant(
        Variant.parse("deepwalk"), shards, transe, kg, pa.table({"k": [0]}),
        variants.EncoderShape(dim=8), params, DEVICE,
    )  # fmt: skip
    assert table.embeddings.shape == (kg.num_entities, 8)
    n = kg.num_entities
    held = held_out_pairs(shards, transe.concept_embeddings, [EEL, *transe.relations], 0.15, 0)
    assert held.shape[1] > 0
    walked_ids = set((walked["eel"][0] * n + walked["eel"][1]).tolist())
    assert not walked_ids & set((held[0] * n + held[1]).tolist())
    assert len(walked_ids) == kg.eel.shape[1] - 2 * held.shape[1]
