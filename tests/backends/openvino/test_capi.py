"""Tests for rmbuild.backends.openvino.capi against the real libopenvino_c.

The model is built here with onnx.helper and compiled to IR with the real ``ovc`` CLI; the
OpenVINO *Python* API is imported only as a reference to compare results with.
"""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The binding needs numpy (an extra): skip, saying so, before importing it.
np = pytest.importorskip("numpy")

from rmbuild.backends.openvino import capi  # noqa: E402

try:
    LIBRARY = capi.find_library()
except capi.OVLibraryNotFound as exc:
    pytest.skip(f"OpenVINO C library not available: {exc}", allow_module_level=True)

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 3)).astype(np.float32)
B = RNG.standard_normal(3).astype(np.float32)
EMB = RNG.standard_normal((10, 4)).astype(np.float32)
ONE32 = np.array(7, np.int32)

INPUTS = ["x", "ids", "past", "hf", "mask", "n32", "u8"]
OUTPUTS = ["y", "present", "hf2", "nmask", "n32p", "u8f"]


def _make_onnx(path: Path) -> None:
    """One graph covering every dtype we map, a dynamic batch, and a KV-cache-like concat."""
    t = TensorProto
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["y"]),
        helper.make_node("Gather", ["E", "ids"], ["emb"], axis=0),
        helper.make_node("Concat", ["past", "emb"], ["present"], axis=1),
        helper.make_node("Add", ["hf", "hf"], ["hf2"]),
        helper.make_node("Not", ["mask"], ["nmask"]),
        helper.make_node("Add", ["n32", "one32"], ["n32p"]),
        helper.make_node("Cast", ["u8"], ["u8f"], to=t.FLOAT),
    ]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "capi_test",
        [
            vi("x", t.FLOAT, ["batch", 4]),
            vi("ids", t.INT64, [1, "seq"]),
            vi("past", t.FLOAT, [1, "past_len", 4]),
            vi("hf", t.FLOAT16, [2, 3]),
            vi("mask", t.BOOL, ["n"]),
            vi("n32", t.INT32, ["m"]),
            vi("u8", t.UINT8, [3]),
        ],
        [
            vi("y", t.FLOAT, ["batch", 3]),
            vi("present", t.FLOAT, [1, "total", 4]),
            vi("hf2", t.FLOAT16, [2, 3]),
            vi("nmask", t.BOOL, ["n"]),
            vi("n32p", t.INT32, ["m"]),
            vi("u8f", t.FLOAT, [3]),
        ],
        [
            numpy_helper.from_array(W, "W"),
            numpy_helper.from_array(B, "b"),
            numpy_helper.from_array(EMB, "E"),
            numpy_helper.from_array(ONE32, "one32"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _make_scalar_onnx(path: Path) -> None:
    t = TensorProto
    graph = helper.make_graph(
        [helper.make_node("Add", ["s", "s"], ["s2"])],
        "scalar",
        [helper.make_tensor_value_info("s", t.FLOAT, [])],
        [helper.make_tensor_value_info("s2", t.FLOAT, [])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _ovc() -> str:
    beside = Path(sys.executable).with_name("ovc")
    found = str(beside) if beside.exists() else shutil.which("ovc")
    if not found:
        pytest.skip("ovc CLI not found (pip install openvino)")
    return found


@pytest.fixture(scope="module")
def ir_xml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ov_ir")
    _make_onnx(root / "model.onnx")
    out = root / "out" / "model.xml"
    proc = subprocess.run(
        [_ovc(), str(root / "model.onnx"), "--output_model", str(out), "--compress_to_fp16=False"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
        pytest.fail(f"ovc failed with exit code {proc.returncode}:\n{tail}")
    assert out.exists() and out.with_suffix(".bin").exists()
    return out


@pytest.fixture(scope="module")
def api() -> capi.OVCApi:
    return capi.load()


@pytest.fixture(scope="module")
def core(api: capi.OVCApi) -> Iterator[capi.Core]:
    with capi.Core(api) as c:
        yield c


# CPUs with avx512_bf16/AMX run f32 models in bf16 by default (relative error ~1e-2); exact
# comparisons need f32 execution, which also exercises the properties path.
F32_EXECUTION = {"INFERENCE_PRECISION_HINT": "f32"}


@pytest.fixture(scope="module")
def compiled(core: capi.Core, ir_xml: Path) -> Iterator[capi.CompiledModel]:
    with core.read_model(ir_xml) as model, core.compile_model(model, "CPU", F32_EXECUTION) as cm:
        yield cm


def _feeds(batch: int = 2, seq: int = 5) -> dict[str, np.ndarray[Any, Any]]:
    return {
        "x": RNG.standard_normal((batch, 4)).astype(np.float32),
        "ids": RNG.integers(0, 10, size=(1, seq), dtype=np.int64),
        "past": np.zeros((1, 0, 4), np.float32),
        "hf": RNG.standard_normal((2, 3)).astype(np.float16),
        "mask": np.array([True, False, True]),
        "n32": np.array([1, -2, 3, 2**30], np.int32),
        "u8": np.array([0, 7, 255], np.uint8),
    }


def _numpy_reference(f: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
    return {
        "y": f["x"] @ W + B,
        "present": np.concatenate([f["past"], EMB[f["ids"]]], axis=1),
        "hf2": f["hf"] + f["hf"],
        "nmask": ~f["mask"],
        "n32p": f["n32"] + ONE32,
        "u8f": f["u8"].astype(np.float32),
    }


def _run(request: capi.InferRequest, feeds: dict[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
    for name, value in feeds.items():
        request.set_input(name, value)
    request.infer()
    return {name: request.get_output(name) for name in OUTPUTS}


# ---------------------------------------------------------------------------------------------
# Locating and loading
# ---------------------------------------------------------------------------------------------


def test_find_library_picks_versioned_file_in_wheel() -> None:
    assert LIBRARY.is_file() and not LIBRARY.is_symlink()
    assert LIBRARY.name.startswith("libopenvino_c")
    assert LIBRARY.parent.name == "libs" and LIBRARY.parent.parent.name == "openvino"


def test_module_never_imports_openvino_python_package() -> None:
    code = (
        "import sys\n"
        "from rmbuild.backends.openvino import capi\n"
        "api = capi.load()\n"
        "with capi.Core(api) as core: core.available_devices()\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'openvino'], sys.modules\n"
    )
    env = dict(os.environ)  # rmbuild is installed (editable) in this environment
    env.pop(capi.ENV_VAR, None)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_explicit_missing_path_raises_with_hint(tmp_path: Path) -> None:
    bad = tmp_path / "nope" / "libopenvino_c.so.1"
    with pytest.raises(capi.OVLibraryNotFound) as err:
        capi.find_library(bad)
    assert str(bad) in str(err.value)
    assert "rmbuild[openvino]" in str(err.value)
    with pytest.raises(capi.OVLibraryNotFound):
        capi.OVCApi(bad)


def test_explicit_folder_and_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert capi.find_library(LIBRARY.parent) == LIBRARY
    monkeypatch.setenv(capi.ENV_VAR, str(LIBRARY))
    assert capi.find_library() == LIBRARY
    monkeypatch.setenv(capi.ENV_VAR, str(tmp_path / "missing.so"))
    with pytest.raises(capi.OVLibraryNotFound, match=capi.ENV_VAR):
        capi.find_library()
    # An explicit argument beats the environment variable.
    assert capi.find_library(LIBRARY) == LIBRARY


def test_no_openvino_package_says_where_it_looked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(capi.ENV_VAR, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(capi.OVLibraryNotFound) as err:
        capi.find_library()
    assert "no 'openvino' package" in str(err.value)
    assert "pip install 'rmbuild[openvino]'" in str(err.value)


def test_file_that_is_not_a_library(tmp_path: Path) -> None:
    fake = tmp_path / "libopenvino_c.so.9999"
    fake.write_text("not an ELF file")
    with pytest.raises(capi.OVLibraryNotFound, match="could not load"):
        capi.OVCApi(fake)


def test_version_matches_python_reference(api: capi.OVCApi) -> None:
    assert re.match(r"^\d{4}\.\d+\.\d+", api.version), api.version
    import openvino  # reference only

    assert api.version == openvino.get_version()
    assert api.major == int(api.version.split(".")[0])


def test_expected_major_mismatch(api: capi.OVCApi) -> None:
    with pytest.raises(capi.OVVersionMismatch, match=f"expected major {api.major + 1}"):
        capi.OVCApi(expected_major=api.major + 1)
    with pytest.raises(capi.OVVersionMismatch):
        capi.load(expected_major=api.major - 1)
    assert capi.load(expected_major=api.major) is api


def test_element_type_codes_match_installed_header(api: capi.OVCApi) -> None:
    header = LIBRARY.parent.parent / "include" / "openvino" / "c" / "ov_common.h"
    if not header.exists():
        pytest.skip("wheel ships no C headers")
    body = re.search(r"typedef enum \{([^}]*)\}\s*ov_element_type_e;", header.read_text())
    assert body is not None
    names = re.findall(r"^\s*([A-Z][A-Z0-9_]*)\s*(?:=\s*0U)?\s*,", body.group(1), re.M)
    expected = {name: code for code, name in enumerate(names)}
    for dtype, name in [
        (np.float32, "F32"),
        (np.float16, "F16"),
        (np.int64, "I64"),
        (np.int32, "I32"),
        (np.uint8, "U8"),
        (np.bool_, "BOOLEAN"),
    ]:
        assert api.element_code(np.dtype(dtype)) == expected[name], name
        assert api.element_name(expected[name]) == name


# ---------------------------------------------------------------------------------------------
# Core, model, inference
# ---------------------------------------------------------------------------------------------


def test_available_devices_contains_cpu(core: capi.Core) -> None:
    devices = core.available_devices()
    assert "CPU" in devices
    assert all(isinstance(d, str) and d for d in devices)


def test_model_and_compiled_model_ports(core: capi.Core, ir_xml: Path) -> None:
    with core.read_model(ir_xml) as model:
        assert model.input_names == INPUTS
        assert model.output_names == OUTPUTS
        assert model.input_types == ["F32", "I64", "F32", "F16", "BOOLEAN", "I32", "U8"]
        assert model.is_dynamic()
        with core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": "1"}) as cm:
            assert cm.input_names == INPUTS
            assert cm.output_names == OUTPUTS


def test_infer_matches_numpy_and_openvino_python(
    compiled: capi.CompiledModel, ir_xml: Path
) -> None:
    feeds = _feeds()
    with compiled.create_infer_request() as request:
        got = _run(request, feeds)
    want = _numpy_reference(feeds)
    for name in OUTPUTS:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)

    import openvino as ov  # reference only

    reference = ov.Core().compile_model(str(ir_xml), "CPU", F32_EXECUTION)(feeds)
    for name in OUTPUTS:
        np.testing.assert_array_equal(got[name], reference[name], err_msg=name)


def test_default_precision_is_close_to_f32(core: capi.Core, ir_xml: Path) -> None:
    """Without properties (the plain compile path) results agree within bf16 accuracy."""
    feeds = _feeds()
    with (
        core.read_model(ir_xml) as model,
        core.compile_model(model) as cm,
        cm.create_infer_request() as request,
    ):
        got = _run(request, feeds)
    np.testing.assert_allclose(got["y"], _numpy_reference(feeds)["y"], rtol=5e-2, atol=5e-2)


def test_output_by_index_equals_by_name(compiled: capi.CompiledModel) -> None:
    with compiled.create_infer_request() as request:
        _run(request, _feeds())
        for index, name in enumerate(OUTPUTS):
            np.testing.assert_array_equal(request.get_output(index), request.get_output(name))


def test_set_input_by_index(compiled: capi.CompiledModel) -> None:
    feeds = _feeds()
    with compiled.create_infer_request() as request:
        for index, name in enumerate(INPUTS):
            request.set_input(index, feeds[name])
        request.infer()
        np.testing.assert_allclose(request.get_output("y"), feeds["x"] @ W + B, rtol=1e-5)


def test_kv_cache_loop_with_changing_shapes(compiled: capi.CompiledModel) -> None:
    """Prefill [1,5] then decode [1,1] steps on one request, feeding `present` back as `past`."""
    feeds = _feeds(batch=1, seq=5)
    with compiled.create_infer_request() as request:
        past = np.zeros((1, 0, 4), np.float32)
        token_ids = [feeds["ids"]] + [np.array([[t]], np.int64) for t in (3, 9, 0)]
        for step, ids in enumerate(token_ids):
            step_feeds = {**feeds, "ids": ids, "past": past}
            out = _run(request, step_feeds)
            expected = np.concatenate([past, EMB[ids]], axis=1)
            assert out["present"].shape == (1, 5 + step, 4)
            np.testing.assert_array_equal(out["present"], expected)
            past = out["present"]
        # The batch dimension can change on the same request too.
        out = _run(request, {**feeds, "x": np.ones((7, 4), np.float32)})
        assert out["y"].shape == (7, 3)


def test_input_buffer_kept_alive_until_replaced(compiled: capi.CompiledModel) -> None:
    feeds = _feeds()
    with compiled.create_infer_request() as request:
        for name, value in feeds.items():
            request.set_input(name, value)
        # A temporary whose only reference is the one the request keeps.
        request.set_input("x", np.full((3, 4), 2.0, np.float32))
        gc.collect()
        clobber = [np.full((3, 4), -9.0, np.float32) for _ in range(64)]
        request.infer()
        np.testing.assert_allclose(
            request.get_output("y"), np.full((3, 4), 2.0, np.float32) @ W + B, rtol=1e-5
        )
        del clobber


def test_non_contiguous_input_is_copied(compiled: capi.CompiledModel) -> None:
    feeds = _feeds()
    x = np.asfortranarray(RNG.standard_normal((5, 4)).astype(np.float32))
    with compiled.create_infer_request() as request:
        out = _run(request, {**feeds, "x": x})
    np.testing.assert_allclose(out["y"], x @ W + B, rtol=1e-5, atol=1e-6)


def test_scalar_input_and_output_from_onnx(core: capi.Core, tmp_path: Path) -> None:
    _make_scalar_onnx(tmp_path / "scalar.onnx")
    with (
        core.read_model(tmp_path / "scalar.onnx") as model,
        core.compile_model(model) as cm,
        cm.create_infer_request() as request,
    ):
        request.set_input("s", np.array(3.5, np.float32))
        request.infer()
        out = request.get_output("s2")
    assert out.shape == () and out.dtype == np.float32 and float(out) == 7.0


# ---------------------------------------------------------------------------------------------
# Errors and ownership
# ---------------------------------------------------------------------------------------------


def test_corrupt_xml_raises_call_error(core: capi.Core, ir_xml: Path, tmp_path: Path) -> None:
    text = ir_xml.read_text()
    bad = tmp_path / "bad.xml"
    bad.write_text(text[: len(text) // 2])
    with pytest.raises(capi.OVCallError) as err:
        core.read_model(bad, ir_xml.with_suffix(".bin"))
    assert err.value.function == "ov_core_read_model"
    assert err.value.status == -1 and err.value.status_name == "GENERAL_ERROR"
    assert err.value.detail and "GENERAL_ERROR" in str(err.value)


def test_missing_model_file(core: capi.Core, tmp_path: Path) -> None:
    with pytest.raises(capi.OVCallError, match="ov_core_read_model failed"):
        core.read_model(tmp_path / "missing.xml")


@pytest.mark.parametrize("device", ["BOGUS", "NPU"])
def test_compile_for_absent_device(core: capi.Core, ir_xml: Path, device: str) -> None:
    if device in core.available_devices():
        pytest.skip(f"{device} is present on this machine")
    with core.read_model(ir_xml) as model, pytest.raises(capi.OVCallError) as err:
        core.compile_model(model, device)
    assert err.value.status_name in capi.STATUS_NAMES.values()
    assert err.value.status != 0


def test_bad_properties(core: capi.Core, ir_xml: Path) -> None:
    with core.read_model(ir_xml) as model:
        with pytest.raises(capi.OVCallError, match="NOT_A_PROPERTY"):
            core.compile_model(model, "CPU", {"NOT_A_PROPERTY": "1"})
        with pytest.raises(capi.OVUnsupportedError, match="must be str"):
            not_a_string: Any = 1
            core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": not_a_string})
        with pytest.raises(capi.OVUnsupportedError, match="pointer"):
            core.compile_model(model, "CPU", {"CACHE_ENCRYPTION_CALLBACKS": "x"})


def test_request_errors_keep_previous_binding(compiled: capi.CompiledModel) -> None:
    feeds = _feeds()
    with compiled.create_infer_request() as request:
        _run(request, feeds)
        with pytest.raises(capi.OVCallError, match="ov_infer_request_set_tensor"):
            request.set_input("u8", np.zeros(5, np.uint8))  # model wants [3]
        with pytest.raises(capi.OVCallError, match="ov_infer_request_get_tensor"):
            request.get_output("no_such_output")
        with pytest.raises(capi.OVUnsupportedError, match="complex64"):
            request.set_input("x", np.zeros((1, 4), np.complex64))
        request.infer()  # the earlier, valid bindings are still in place
        np.testing.assert_allclose(request.get_output("y"), feeds["x"] @ W + B, rtol=1e-5)


def test_invalid_param_does_not_reuse_stale_message(
    api: capi.OVCApi, core: capi.Core, ir_xml: Path
) -> None:
    with core.read_model(ir_xml) as model, pytest.raises(capi.OVCallError, match="BOGUS"):
        core.compile_model(model, "BOGUS")
    handle = ctypes.c_void_p()
    with pytest.raises(capi.OVCallError) as err:
        api.call("ov_core_read_model", None, b"x.xml", None, ctypes.byref(handle))
    assert err.value.status_name == "INVALID_C_PARAM"
    assert "BOGUS" not in str(err.value)


def test_close_twice_and_use_after_close(api: capi.OVCApi, ir_xml: Path) -> None:
    core = capi.Core(api)
    model = core.read_model(ir_xml)
    cm = core.compile_model(model)
    request = cm.create_infer_request()
    # Parents may go first: the C++ objects underneath are reference counted.
    core.close()
    model.close()
    cm.close()
    _run(request, _feeds())
    for obj in (request, cm, model, core):
        obj.close()
        obj.close()
        assert obj.closed
    with pytest.raises(capi.OVClosedError):
        request.infer()
    with pytest.raises(capi.OVClosedError):
        core.available_devices()
    with pytest.raises(capi.OVClosedError):
        core.read_model(ir_xml)


def test_every_handle_is_freed_exactly_once(ir_xml: Path) -> None:
    """Count successful creations and frees through a private OVCApi, error paths included."""
    api = capi.OVCApi()
    created: Counter[str] = Counter()
    freed: Counter[str] = Counter()
    creators = {
        "ov_core_create": "core",
        "ov_core_read_model": "model",
        "ov_core_compile_model_props": "compiled",
        "ov_core_compile_model": "compiled",
        "ov_compiled_model_create_infer_request": "request",
        "ov_model_const_input_by_index": "port",
        "ov_model_const_output_by_index": "port",
        "ov_compiled_model_input_by_index": "port",
        "ov_compiled_model_output_by_index": "port",
        "ov_tensor_create": "tensor",
        "ov_tensor_create_from_host_ptr": "tensor",
        "ov_infer_request_get_tensor": "tensor",
        "ov_infer_request_get_output_tensor_by_index": "tensor",
        "ov_shape_create": "shape",
    }
    freers = {
        "ov_core_free": "core",
        "ov_model_free": "model",
        "ov_compiled_model_free": "compiled",
        "ov_infer_request_free": "request",
        "ov_output_const_port_free": "port",
        "ov_tensor_free": "tensor",
        "ov_shape_free": "shape",
    }

    def counting(name: str, kind: str, table: Counter[str], only_ok: bool) -> Any:
        original = api._functions[name]

        def wrapper(*args: Any) -> Any:
            result = original(*args)
            if not only_ok or result == 0:
                table[kind] += 1
            return result

        return wrapper

    for name, kind in creators.items():
        if api.has(name):
            api._functions[name] = counting(name, kind, created, only_ok=True)
    for name, kind in freers.items():
        api._functions[name] = counting(name, kind, freed, only_ok=False)

    feeds = _feeds()
    with capi.Core(api) as core:
        with core.read_model(ir_xml) as model:
            assert model.input_names == INPUTS
            with core.compile_model(model) as cm, cm.create_infer_request() as request:
                assert cm.output_names == OUTPUTS
                _run(request, feeds)
                with pytest.raises(capi.OVCallError):
                    request.set_input("u8", np.zeros(5, np.uint8))
                with pytest.raises(capi.OVCallError):
                    request.get_output("no_such_output")
                _run(request, _feeds(batch=1, seq=1))
        with pytest.raises(capi.OVCallError):
            core.read_model(ir_xml.with_name("missing.xml"))
    # ov_tensor_get_shape allocates dims the same way ov_shape_create does.
    assert created["tensor"] > 0 and created["port"] > 0
    shape_frees_from_outputs = freed["shape"] - created["shape"]
    assert shape_frees_from_outputs == 2 * len(OUTPUTS)  # one per get_output, two runs
    del created["shape"], freed["shape"]
    assert created == freed
