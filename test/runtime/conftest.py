"""Fixtures of the runtime tests: a hand-built ONNX model and the stand-in TensorRT module."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from evseg_ros.runtime.backend import META_LABEL_SET


def _argmax_model(
    path: Path,
    *,
    input_names: tuple[str, str] = ("image", "events"),
    mask_type: int = TensorProto.UINT8,
    spatial: tuple = ("h", "w"),
    label_set: str | None = "dsec11",
) -> Path:
    """Tiny hand-built model: logits = image + events, mask = argmax over the 3 channels."""
    dims = ["n", 3, *spatial]
    a, b = input_names
    nodes = [
        helper.make_node("Add", [a, b], ["logits"]),
        helper.make_node("ArgMax", ["logits"], ["idx"], axis=1, keepdims=0),
        helper.make_node("Cast", ["idx"], ["mask"], to=mask_type),
    ]
    graph = helper.make_graph(
        nodes,
        "argmax",
        [
            helper.make_tensor_value_info(a, TensorProto.FLOAT, dims),
            helper.make_tensor_value_info(b, TensorProto.FLOAT, dims),
        ],
        [
            helper.make_tensor_value_info("mask", mask_type, ["n", *spatial]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, dims),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if label_set is not None:
        helper.set_model_props(model, {META_LABEL_SET: label_set})
    onnx.save(model, str(path))
    return path


@pytest.fixture
def argmax_model():
    """Builds ``logits = image + events, mask = argmax`` (3 classes) at a path: fast to load."""
    return _argmax_model


@pytest.fixture
def fake_tensorrt(monkeypatch):
    """Installs the stand-in ``tensorrt`` (10.3.0); returns a factory for other releases.

    ``fake_tensorrt()`` gives the installed module; ``fake_tensorrt("10.5.0")`` installs and
    returns a module of another release, as an upgrade of the machine would.
    """
    spec = importlib.util.spec_from_file_location(
        "fake_tensorrt", Path(__file__).with_name("fake_tensorrt.py")
    )
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    installed = {}

    def install(version: str | None = None):
        if version is not None or not installed:
            installed["module"] = fake.make_module(version or "10.3.0")
            monkeypatch.setitem(sys.modules, "tensorrt", installed["module"])
        return installed["module"]

    install()
    return install
