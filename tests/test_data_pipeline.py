"""The grain batch pipeline: layout, packing equivalence on a tiny model, determinism, resume, sharding."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ftjax.data.pipeline import Batches


def make_examples(n=40, seed=0, lo=2, hi=12):
    """Distinct examples (the first two tokens encode the index) with a prompt half and a target half."""
    rng = np.random.RandomState(seed)
    out = []
    for i in range(n):
        k = int(rng.randint(lo, hi))
        ids = [3 + i % 100, 3 + i // 100] + rng.randint(3, 131, k - 2).tolist()
        out.append({"input_ids": ids, "loss_mask": [0] * (k // 2) + [1] * (k - k // 2)})
    return out


def rows_of(batch):
    """The examples in a batch, as tuples of their tokens (one per segment)."""
    found = []
    for r in range(batch["inputs"].shape[0]):
        for s in range(1, batch["segment_ids"][r].max() + 1):
            found.append(tuple(batch["inputs"][r][batch["segment_ids"][r] == s]))
    return found


def take(batches, n):
    return [next(batches) for _ in range(n)]


def same(a, b):
    return len(a) == len(b) and all(x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
                                    for x, y in zip(a, b))


def test_padded_and_packed_layout():
    ex = [{"input_ids": [5, 6, 7], "loss_mask": [0, 1, 1]}, {"input_ids": [8, 9, 10, 11], "loss_mask": [0, 0, 1, 1]}]
    padded = next(Batches(ex, batch_size=2, seq_len=8, seed=0, shuffle=False, pad_id=0))
    assert padded["inputs"][0].tolist() == [5, 6, 7, 0, 0, 0, 0, 0]
    assert padded["targets"][0].tolist() == [6, 7, 0, 0, 0, 0, 0, 0]
    assert padded["loss_mask"][0].tolist() == [True, True] + [False] * 6
    assert padded["attention_mask"][1].tolist() == [True] * 4 + [False] * 4
    assert padded["segment_ids"][1].tolist() == [1] * 4 + [0] * 4
    packed = next(Batches(ex, batch_size=1, seq_len=8, seed=0, shuffle=False, pack=True, pad_id=0))
    assert packed["inputs"][0].tolist() == [5, 6, 7, 8, 9, 10, 11, 0]
    assert packed["targets"][0].tolist() == [6, 7, 0, 9, 10, 11, 0, 0]  # never the next example's first token
    assert packed["loss_mask"][0].tolist() == [True, True, False, False, True, True, False, False]
    assert packed["segment_ids"][0].tolist() == [1, 1, 1, 2, 2, 2, 2, 0]
    assert packed["positions"][0].tolist() == [0, 1, 2, 0, 1, 2, 3, 0]
    assert packed["attention_mask"][0].tolist() == [True] * 7 + [False]
    for b in (padded, packed):
        assert {k: v.dtype.name for k, v in b.items()} == {
            "inputs": "int32", "targets": "int32", "loss_mask": "bool", "attention_mask": "bool",
            "positions": "int32", "segment_ids": "int32", "values": "float32", "weights": "float32"}
        assert not b["values"].any()  # no regression examples
        assert (b["weights"] == b["loss_mask"]).all()  # unweighted examples weigh 1 at their targets
    # a regression example's value sits where its one target is, packed or padded
    reg = [{"input_ids": [5, 6, 0], "loss_mask": [0, 0, 1], "value": 2.5},
           {"input_ids": [8, 9, 10, 0], "loss_mask": [0, 0, 0, 1], "value": -1.0}]
    packed = next(Batches(reg, batch_size=1, seq_len=8, seed=0, shuffle=False, pack=True, pad_id=0))
    assert packed["values"][0].tolist() == [0, 2.5, 0, 0, 0, -1.0, 0, 0]
    assert packed["values"][0][packed["loss_mask"][0]].tolist() == [2.5, -1.0]
    padded = next(Batches(reg, batch_size=2, seq_len=8, seed=0, shuffle=False, pad_id=0))
    assert padded["values"][1].tolist() == [0, 0, -1.0, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("kw", [dict(), dict(pack=True), dict(bucket_window=3)])
def test_one_epoch_sees_every_example_once(kw):
    ex = make_examples(37)
    seen = [r for b in Batches(ex, batch_size=4, seq_len=24, seed=3, num_epochs=1, drop_remainder=False, **kw)
            for r in rows_of(b)]
    assert sorted(seen) == sorted(tuple(e["input_ids"]) for e in ex)


def test_packing_matches_unpacked_logits(hf_folder):
    """Attention never crosses packed examples: per-example logits equal those of the example run alone."""
    from flax import nnx

    import ftjax.models as M

    model = M.from_pretrained(hf_folder("llama")[1])
    run = nnx.jit(lambda m, b, seg: m(b["inputs"], positions=b["positions"], attention_mask=b["attention_mask"],
                                      segment_ids=b["segment_ids"] if seg else None), static_argnums=2)
    ex = make_examples(9, seed=1, lo=3, hi=14)
    # each example alone: right padding is invisible to a causal model, so one padded batch gives the reference
    ref = next(Batches(ex, batch_size=len(ex), seq_len=32, seed=0, shuffle=False))
    ref_logits = np.asarray(run(model, ref, False))
    alone = {tuple(e["input_ids"]): ref_logits[i, :len(e["input_ids"])] for i, e in enumerate(ex)}
    checked = 0
    for pack in (True, False):
        for b in Batches(ex, batch_size=3, seq_len=32, seed=0, pack=pack, num_epochs=1, drop_remainder=False):
            logits, crossing = np.asarray(run(model, b, True)), np.asarray(run(model, b, False))
            for r in range(b["inputs"].shape[0]):
                for s in range(1, b["segment_ids"][r].max() + 1):
                    where = b["segment_ids"][r] == s
                    np.testing.assert_allclose(logits[r][where], alone[tuple(b["inputs"][r][where])], atol=2e-5)
                    checked += 1
                    if pack and s > 1:  # without segment ids the second example would see the first
                        assert not np.allclose(crossing[r][where], logits[r][where], atol=1e-3)
    assert checked == 2 * len(ex)


def test_deterministic_given_seed_and_reshuffled_each_epoch():
    ex = make_examples(16)
    a = take(Batches(ex, batch_size=4, seq_len=16, seed=7), 8)
    assert same(a, take(Batches(ex, batch_size=4, seq_len=16, seed=7), 8))
    assert not same(a, take(Batches(ex, batch_size=4, seq_len=16, seed=8), 8))
    epoch1, epoch2 = [r for b in a[:4] for r in rows_of(b)], [r for b in a[4:] for r in rows_of(b)]
    assert sorted(epoch1) == sorted(epoch2) and epoch1 != epoch2


@pytest.mark.parametrize("kw", [dict(), dict(pack=True), dict(bucket_window=2), dict(shuffle=False)])
@pytest.mark.parametrize("stop", [3, 11])  # mid-epoch and in the second epoch
def test_resume_gives_the_same_batches(kw, stop):
    ex = make_examples(30)
    run = Batches(ex, batch_size=4, seq_len=24, seed=5, **kw)
    expected = take(run, 16)
    first = Batches(ex, batch_size=4, seq_len=24, seed=5, **kw)
    take(first, stop)
    state = json.loads(json.dumps(first.get_state()))  # what goes into the checkpoint
    if not kw.get("pack"):  # packed rows hold several examples: epochs go faster
        assert state["epoch"] == (0 if stop == 3 else 1)
    resumed = Batches(ex, batch_size=4, seq_len=24, seed=5, **kw)
    resumed.set_state(state)
    assert same(take(resumed, 16 - stop), expected[stop:])


def test_state_from_another_pipeline_is_refused():
    ex = make_examples(12)
    state = Batches(ex, batch_size=4, seq_len=16, seed=1).get_state()
    with pytest.raises(ValueError, match="seed: saved 1, now 2"):
        Batches(ex, batch_size=4, seq_len=16, seed=2).set_state(state)


@pytest.mark.parametrize("pack", [False, True])
def test_shards_are_disjoint_and_complete(pack):
    ex = make_examples(30)
    per_host = [[r for b in Batches(ex, batch_size=2, seq_len=24, seed=4, pack=pack, num_epochs=1,
                                    shard_index=i, shard_count=3, drop_remainder=False) for r in rows_of(b)]
                for i in range(3)]
    assert sum(map(len, per_host)) == len(ex)
    assert sorted(r for host in per_host for r in host) == sorted(tuple(e["input_ids"]) for e in ex)
    even = [Batches(ex[:31], batch_size=2, seq_len=24, seed=4, shard_index=i, shard_count=4).shard_size
            for i in range(4)]
    assert even == [7, 7, 7, 7]  # with drop_remainder every host gets the same number of examples


def test_bucketing_cuts_padding():
    ex = make_examples(64, lo=2, hi=30)

    def real_fraction(**kw):
        bs = take(Batches(ex, batch_size=4, seq_len=32, seed=0, **kw), 16)
        assert {b["inputs"].shape[1] for b in bs} <= {4, 8, 16, 32}
        return sum(b["attention_mask"].sum() for b in bs) / sum(b["attention_mask"].size for b in bs)

    assert real_fraction(bucket_window=4) > real_fraction() + 0.1


def test_bad_arguments():
    ex = make_examples(4)
    with pytest.raises(ValueError, match="more than seq_len=4"):
        Batches(ex, batch_size=2, seq_len=4, seed=0)
    with pytest.raises(ValueError, match="shard_index"):
        Batches(ex, batch_size=2, seq_len=16, seed=0, shard_index=2, shard_count=2)
    with pytest.raises(ValueError, match="bucket_window is for padded batches in one process"):
        Batches(ex, batch_size=2, seq_len=16, seed=0, pack=True, bucket_window=2)
