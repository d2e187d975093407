"""Batching across robots in the models: ``SplitModel.cloud_batch`` runs the first cloud step of several exchanges at
one cut as one batched forward, and each request gets the actions it gets alone.

Tolerance: openvla's actions are argmax tokens (bit-identical). pi0 and smolvla return float32 velocities integrated
over the denoising steps, cogact DDIM samples (|actions| up to ~7 at tiny); a float32 GEMM over B rows may block its
reductions differently from one over 1 row, so a batch differs from a lone request by a few ulps (measured max 2.4e-7
for pi0/smolvla, 1.4e-6 for cogact, on this CPU); we allow 1e-5 absolute.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from executor.models import Payload, PayloadError, build_model, run_split

BATCH = 3
ATOL = {"openvla": 0.0, "pi0": 1e-5, "smolvla": 1e-5, "cogact": 1e-5}


@pytest.fixture(scope="module", params=["openvla", "pi0", "smolvla", "cogact"])
def model(request):
    return build_model(request.param, "tiny", seed=0)


def _finish(model, edge, sess, reply) -> np.ndarray:
    """Drive one exchange to its actions from the cloud's first reply (decode round trips on its own session)."""
    out = edge.on_reply(reply)
    while not isinstance(out, np.ndarray):
        out = edge.on_reply(sess.on_request(out))
    return out


def _batch_vs_alone(model, cut: int, seeds: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    edges = [model.edge_session(cut) for _ in seeds]
    payloads = [e.start(model.make_observation(s)) for e, s in zip(edges, seeds)]
    results = model.cloud_batch(cut, payloads)
    assert len(results) == len(seeds)
    pairs = []
    for edge, result, seed in zip(edges, results, seeds):
        assert not isinstance(result, Exception), result
        sess, reply = result
        alone, _ = run_split(model, model.make_observation(seed), cut)
        pairs.append((_finish(model, edge, sess, reply), alone))
    return pairs


def _cuts(model) -> list[int]:
    n = model.num_blocks
    cuts = [0, n // 2, n - 1] + list(range(n + 1, model.num_cuts))  # + the reverse (cloud_then_edge) cut
    if model.family == "openvla":
        cuts.append(model._i_embed + 2)  # inside the LLM: each session keeps its slice of the batch's KV cache
    return cuts


def test_a_batch_gives_each_request_its_own_actions(model, caplog):
    caplog.set_level(logging.INFO, logger="executor.models.base")
    for cut in _cuts(model):
        pairs = _batch_vs_alone(model, cut, list(range(BATCH)))
        for batched, alone in pairs:
            assert batched.shape == alone.shape
            np.testing.assert_allclose(batched, alone, rtol=0, atol=ATOL[model.family], err_msg=f"cut {cut}")
        # the requests differ, so a batch that mixed them up would fail above
        assert not np.array_equal(pairs[0][1], pairs[1][1])
    # every batch ran as one batched forward, not through the one-at-a-time fallback
    assert not [r.getMessage() for r in caplog.records if "one by one" in r.getMessage()]


def test_a_bad_request_fails_alone(model):
    cut = 0
    good = [model.edge_session(cut).start(model.make_observation(s)) for s in range(2)]
    wrong_cut = model.edge_session(1).start(model.make_observation(5))
    bad_ids = dict(good[0].tensors)
    bad_ids["prompt_ids"] = bad_ids["prompt_ids"].clone()
    bad_ids["prompt_ids"][0] = 10**9  # passes the shape check, fails inside the batched forward (embedding index)
    hostile = Payload(kind=good[0].kind, cut=cut, tensors=bad_ids, activations=good[0].activations)
    results = model.cloud_batch(cut, [good[0], wrong_cut, hostile, good[1]])
    assert isinstance(results[1], PayloadError)  # a payload of another cut
    assert isinstance(results[2], IndexError)
    for i, seed in ((0, 0), (3, 1)):
        sess, reply = results[i]
        edge = model.edge_session(cut)
        edge.start(model.make_observation(seed))
        np.testing.assert_allclose(
            _finish(model, edge, sess, reply),
            model.forward(model.make_observation(seed)),
            rtol=0,
            atol=ATOL[model.family],
        )


def test_batch_of_one_is_the_lone_path(model):
    cut = model.num_blocks - 1
    edge = model.edge_session(cut)
    payload = edge.start(model.make_observation(7))
    [(sess, reply)] = model.cloud_batch(cut, [payload])
    alone, _ = run_split(model, model.make_observation(7), cut)
    np.testing.assert_array_equal(_finish(model, edge, sess, reply), alone)
