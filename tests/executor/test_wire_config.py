"""The wire configuration: parsing, the bytes each cut is charged vs what the client really sends, the server decoding
JPEG frames and reduced-precision activations, exactness of raw/fp32, and the codec time charged per cut."""

from __future__ import annotations

import time

import numpy as np
import pytest

from executor.wire_config import DEFAULT_WIRE, EXACT_WIRE, WireConfig, wire_mismatch

torch = pytest.importorskip("torch")


def test_parse_label_round_trip_and_aliases() -> None:
    assert DEFAULT_WIRE == WireConfig("jpeg:90", "fp16") == WireConfig.parse("default") == WireConfig.parse(None)
    assert EXACT_WIRE == WireConfig.parse("exact") == WireConfig.parse("raw,fp32") == WireConfig("raw", "float32")
    assert DEFAULT_WIRE.label == "jpeg:90,fp16" and DEFAULT_WIRE.compression == "fp16"
    w = WireConfig.parse("resize:112+jpeg:75,int8")
    assert (w.image, w.activation_dtype, w.compression) == ("resize:112+jpeg:75", "int8", "int8")
    for cfg in (DEFAULT_WIRE, EXACT_WIRE, w, WireConfig("png", "bf16")):
        assert WireConfig.parse(cfg.label) == cfg == WireConfig.from_dict(cfg.to_dict())
    assert EXACT_WIRE.exact and not DEFAULT_WIRE.exact


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("jpeg:90", "IMAGE,DTYPE"),
        ("gif,fp16", "bad image encoding"),
        ("jpeg:90,fp8", "unknown activation dtype"),
        ("jpeg:200,fp16", "1..95"),
    ],
)
def test_bad_specs_name_the_problem(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        WireConfig.parse(spec)


def test_mismatch_message() -> None:
    assert wire_mismatch(DEFAULT_WIRE.to_dict(), DEFAULT_WIRE) is None
    assert wire_mismatch(None, DEFAULT_WIRE) is None
    msg = wire_mismatch(EXACT_WIRE.to_dict(), DEFAULT_WIRE)
    assert msg is not None and "raw,fp32" in msg and "jpeg:90,fp16" in msg


# ------------------------------------------------------------------------------------- charged vs real payloads


@pytest.fixture(scope="module", params=("openvla", "pi0"))
def model_pair(request):
    from executor.models import build_model

    return build_model(request.param, "tiny", seed=0), build_model(request.param, "tiny", seed=0)


def _obs(model, seed: int = 0):
    from executor.camera import image_shape, sample_frames

    obs = model.make_observation(seed)
    shape = image_shape(model)
    obs["images"] = sample_frames(shape.cameras, shape.image_px, 0)  # the frames the cuts are priced on
    return obs


@pytest.mark.network
@pytest.mark.parametrize("spec", ["exact", "default", "png,bf16", "jpeg:75,int8"])
def test_charged_bytes_match_the_client_payloads_within_1_percent(model_pair, spec: str) -> None:
    from executor.client import ClientConfig, EdgeClient
    from executor.server import CloudServer, ServerConfig
    from executor.wire_config import wire_cut_specs

    edge, cloud = model_pair
    wire = WireConfig.parse(spec)
    charged = wire_cut_specs(edge, wire)
    server = CloudServer(cloud, ServerConfig(port=0)).start()  # replies in the codec the client names
    try:
        with EdgeClient(edge, server.url, ClientConfig(wire=wire, probe_interval_s=None)) as client:
            client.connect()
            obs = _obs(edge)
            checked = 0
            for i, cut in enumerate(charged):
                res = client.infer(obs, i, deadline=time.perf_counter() + 20)
                t = res.timing
                if not cut.uses_network:
                    assert not res.networked and t.bytes_up == t.bytes_down == 0
                    continue
                assert t.round_trips == cut.round_trips
                up = cut.up_bytes + cut.round_trips * cut.round_trip_up_bytes
                down = cut.down_bytes + cut.round_trips * cut.round_trip_down_bytes
                assert t.bytes_up == pytest.approx(up, rel=0.01), f"{spec} cut {i} {cut.name} up"
                assert t.bytes_down == pytest.approx(down, rel=0.01), f"{spec} cut {i} {cut.name} down"
                checked += 1
            assert checked == sum(c.uses_network for c in charged) >= edge.num_blocks
    finally:
        server.stop()


@pytest.mark.network
def test_server_decodes_jpeg_frames_and_fp16_activations(model_pair) -> None:
    """Cut 0 under the default wire: the server decodes JPEG frames, so the actions equal the unsplit forward of the
    JPEG-decoded frames exactly; a middle cut sends fp16 activations: close to the exact actions, not equal to
    them. Raw/fp32 reproduces the unsplit forward bit for bit at every cut."""
    from executor.camera import ImageEncoding
    from executor.client import ClientConfig, EdgeClient
    from executor.server import CloudServer, ServerConfig

    edge, cloud = model_pair
    obs = _obs(edge, 1)
    exact = edge.forward(obs)
    jpeg_obs = dict(obs, images=ImageEncoding.parse("jpeg:90").encode(obs["images"]).decode())
    server = CloudServer(cloud, ServerConfig(port=0)).start()
    try:
        with EdgeClient(edge, server.url, ClientConfig(wire=EXACT_WIRE, probe_interval_s=None)) as client:
            client.connect()
            for i in range(edge.num_cuts):
                np.testing.assert_array_equal(client.infer(obs, i, deadline=time.perf_counter() + 20).actions, exact)
            raw_up = client.infer(obs, 0, deadline=time.perf_counter() + 20).timing.bytes_up
        with EdgeClient(edge, server.url, ClientConfig(wire=DEFAULT_WIRE, probe_interval_s=None)) as client:
            client.connect()
            res0 = client.infer(obs, 0, deadline=time.perf_counter() + 20)
            assert res0.timing.bytes_up < raw_up - 0.3 * obs["images"].nbytes  # frames travelled compressed
            np.testing.assert_array_equal(res0.actions, edge.forward(jpeg_obs))
            if edge.family == "pi0":  # continuous actions: within fp16 tolerance of the exact run, not equal
                mid = edge.num_blocks // 2
                res = client.infer(obs, mid, deadline=time.perf_counter() + 20)
                assert res.networked
                np.testing.assert_allclose(res.actions, exact, rtol=1e-2, atol=1e-2)
                assert not np.array_equal(res.actions, exact)
    finally:
        server.stop()


def test_decode_frames_rejects_hostile_frames() -> None:
    from executor.camera import ImageCodecError, ImageEncoding, sample_frames
    from executor.frame_transport import decode_frames

    frames = ImageEncoding.parse("jpeg:90").encode(sample_frames(1, 32)).frames
    good = {"images@0": np.frombuffer(frames[0], np.uint8)}
    meta = {"frames": {"encoding": "jpeg:90", "shape": [1, 32, 32, 3]}}
    assert decode_frames(good, meta)["images"].shape == (1, 32, 32, 3)
    assert decode_frames({"x": 1}, {}) == {"x": 1}  # raw frames (openpi clients) pass through
    bad = [
        ({"frames": {"encoding": "jpeg:90", "shape": [1, 64, 64, 3]}}, good, "expected 64x64"),  # header says 32x32
        ({"frames": {"encoding": "gif", "shape": [1, 32, 32, 3]}}, good, "bad image encoding"),
        ({"frames": {"encoding": "jpeg:90", "shape": [1, 99999, 32, 3]}}, good, "shape must be"),
        ({"frames": {"encoding": "png", "shape": [1, 32, 32, 3]}}, good, "expected PNG"),
        (meta, {"images@0": np.zeros(100, np.uint8)}, "cannot decode"),
        (meta, {}, "expected tensors"),
        ({"frames": "jpeg"}, good, "must be a map"),
    ]
    for m, tensors, match in bad:
        with pytest.raises(ImageCodecError, match=match):
            decode_frames(tensors, m)


# ------------------------------------------------------------------------------------------ pricing and timing


def test_priced_profiles_charge_encoded_frames_and_codec_time() -> None:
    from executor.camera import encoded_image_bytes, image_shape
    from executor.costs import cut_table
    from executor.models import build_model
    from executor.wire_config import roofline_pair

    model = build_model("pi0", "full", device="meta")
    shape = image_shape(model)
    raw_e, raw_c = roofline_pair("pi0", "full", "orin", "a100", EXACT_WIRE)
    dep_e, dep_c = roofline_pair("pi0", "full", "orin", "a100", DEFAULT_WIRE)
    assert dep_e.notes["wire"]["label"] == "jpeg:90,fp16" and dep_e.wire_dtype == "float16"
    # cloud-only: the upload drops by the raw-minus-JPEG frame bytes (framing aside)
    saved = raw_e.cuts[0].up_bytes - dep_e.cuts[0].up_bytes
    assert saved == pytest.approx(
        shape.raw_bytes - encoded_image_bytes("jpeg:90", shape.cameras, shape.image_px), abs=600
    )
    # a middle cut's activations halve (fp32 -> fp16)
    mid = model.num_blocks // 2
    assert dep_e.cuts[mid].up_bytes == pytest.approx(raw_e.cuts[mid].up_bytes / 2, rel=0.01)
    # codec time: zero for raw/fp32 and edge-only; JPEG encode on the Orin > decode on the A100 host; charged
    assert all(t == 0 for t in raw_e.codec_ms) and dep_e.codec_ms[model.num_blocks] == 0
    assert dep_e.codec_ms[0] > dep_c.codec_ms[0] > 0
    t_raw, t_dep = cut_table(raw_e, raw_c), cut_table(dep_e, dep_c)
    assert t_dep.edge_ms[0] - t_raw.edge_ms[0] == pytest.approx(dep_e.codec_ms[0])
    px = shape.cameras * shape.image_px**2
    assert dep_e.codec_ms[0] == pytest.approx(px / 1e6 / (160 * 0.4) * 1e3, rel=0.05)


def test_measured_codec_time_is_charged_for_cpu_profiles() -> None:
    from executor.models import build_model
    from executor.profiler import ProfilerConfig, profile_model
    from executor.wire_config import priced_profiles

    model = build_model("pi0", "tiny", seed=0)
    p = profile_model(model, ProfilerConfig(warmup_runs=1, measured_runs=2))
    e, c = priced_profiles(p, p, model, DEFAULT_WIRE)
    assert "measured" in e.notes["codec_time"]
    assert e.codec_ms[0] > 0 and e.codec_ms == c.codec_ms and e.codec_ms[model.num_blocks] == 0


def test_reply_codec_follows_the_request_and_ignores_bad_names() -> None:
    from executor.server import reply_codec

    assert reply_codec({"reply_compression": "fp16"}, "none") == "fp16"
    assert reply_codec({}, "bf16") == "bf16"
    for bad in ("gzip", 3, None, ["fp16"]):
        assert reply_codec({"reply_compression": bad}, "none") == "none"
