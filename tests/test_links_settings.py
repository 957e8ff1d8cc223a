"""Link settings of a project and the per-client codec choice."""

from __future__ import annotations

import pytest

from mlitb.links import OFFER, LinkSettings, WelcomeCodecs, negotiate
from mlitb.validate import FieldError


def test_defaults_are_float32_gradients():
    s = LinkSettings.parse(None)
    assert (s.result_codecs, s.param_codecs, s.local_steps) == (("f32",), ("f32",), 1)
    assert negotiate(s, OFFER) == WelcomeCodecs(topk_ratio=s.topk_ratio, full_every=s.full_every)


def test_each_client_gets_the_projects_first_choice_it_implements():
    s = LinkSettings.parse({"result_codecs": ["topk", "i8", "f32"], "param_codecs": ["delta-i8", "f32"],
                            "topk_ratio": 0.05, "full_every": 10, "local_steps": 4})
    full = negotiate(s, OFFER)
    assert (full.result, full.params, full.topk_ratio, full.full_every, full.local_steps) == ("topk", "delta-i8", 0.05, 10, 4)
    assert negotiate(s, {"results": ["f32", "i8"], "params": ["f32"]}).result == "i8"
    old = negotiate(s, None)  # a client from before codecs
    assert (old.result, old.params) == ("f32", "f32")
    assert negotiate(s, {"results": "i8", "params": [3, "zstd"]}).result == "f32"  # junk offers read as f32
    assert WelcomeCodecs.parse(full.to_json()) == full
    assert WelcomeCodecs.parse(None) == WelcomeCodecs()


@pytest.mark.parametrize("doc,field", [
    ({"result_codecs": ["zstd"]}, "result_codecs"),
    ({"result_codecs": []}, "result_codecs"),
    ({"param_codecs": ["i8"]}, "param_codecs"),
    ({"param_codecs": ["f32", "f32"]}, "param_codecs"),
    ({"topk_ratio": 0}, "topk_ratio"),
    ({"topk_ratio": 1.5}, "topk_ratio"),
    ({"full_every": 0}, "full_every"),
    ({"local_steps": 0}, "local_steps"),
    ({"local_steps": 10_000}, "local_steps"),
    ({"local_learning_rate": -1}, "local_learning_rate"),
])
def test_bad_settings_name_the_field(doc, field):
    with pytest.raises(FieldError) as info:
        LinkSettings.parse(doc)
    assert info.value.field == field


def test_a_worker_follows_a_delta_stream_and_skips_a_delta_it_cannot_apply():
    import msgpack
    import numpy as np

    from mlitb.codecs import decode_vector
    from mlitb.master.param_frames import ParamFrames
    from mlitb.worker.link_codecs import LinkCodecs

    chosen = negotiate(LinkSettings.parse({"result_codecs": ["i8"], "param_codecs": ["delta-i8"]}), OFFER)
    worker = LinkCodecs.from_welcome({"codecs": chosen.to_json()}, 500)
    frames = ParamFrames(full_every=chosen.full_every)
    params = np.linspace(-1, 1, 500, dtype=np.float32)
    frames.advance(1, params, {"delta-i8"})
    assert worker.on_params(msgpack.unpackb(frames.frame_for("delta-i8", None)))[0] == 1
    frames.advance(2, params * 0.9, {"delta-i8"})
    it, held = worker.on_params(msgpack.unpackb(frames.frame_for("delta-i8", 1)))
    assert it == 2 and np.abs(held - params * 0.9).max() < 0.01
    frames.advance(3, params * 0.8, {"delta-i8"})
    frames.advance(4, params * 0.7, {"delta-i8"})  # the worker missed iteration 3's frame
    assert worker.on_params(msgpack.unpackb(frames.frame_for("delta-i8", 3))) is None and worker.mismatches == 1
    codec, data = worker.encode_result(params)
    assert codec == "i8" and len(data) < 600
    assert np.abs(decode_vector("i8", data, 500) + worker.feedback.residual - params).max() < 1e-6


def _create(**extra):
    from mlitb.master.definition import parse_create
    from mlitb.model.zoo import MNIST_SOFTMAX

    body = {"name": "links", "dataset": "mnist", "layers": MNIST_SOFTMAX, **extra}
    return parse_create(body, dataset_shape=(28, 28, 1), num_classes=10, default_eval_every=1,
                        iteration_range=(100, 30_000))[0]


def test_a_project_stores_its_link_settings_and_checks_them():
    from mlitb.master.definition import ProjectDef, ValidationError

    assert _create().link_settings == LinkSettings()
    d = _create(links={"result_codecs": ["i8", "f32"], "local_steps": 4}, optimizer={"name": "nesterov"})
    assert d.link_settings.result_codecs == ("i8", "f32") and d.link_settings.local_steps == 4
    assert ProjectDef.from_json(d.to_json()).link_settings == d.link_settings
    for links, optimizer, field in [({"codec": "i8"}, {}, "links.codec"),
                                    ({"result_codecs": ["zstd"]}, {}, "links.result_codecs"),
                                    ({"local_steps": 4}, {"name": "adam"}, "optimizer.name")]:
        with pytest.raises(ValidationError) as info:
            _create(links=links, optimizer=optimizer)
        assert info.value.field == field
