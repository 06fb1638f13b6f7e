"""End-to-end tests of the IREE backend with the real toolchain.

The tiny Llama of examples/ is exported (optimum-cli), imported (iree-import-onnx) and compiled
(iree-compile) for the CPU and, cross-compiled, for CUDA; the CPU artifact is loaded through
rmbuild's loader and must generate the tokens a plain PyTorch greedy loop gives. Built artifacts
are shared by the whole module (one store) so the suite stays short.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

# Every import of an extra goes through importorskip, so the suite collects (and
# skips here, saying why) with only the core and dev extras installed.
pytest.importorskip("iree.runtime")
pytest.importorskip("iree.compiler")
pytest.importorskip("optimum.exporters.onnx")
np = pytest.importorskip("numpy")

from artifact_store import Store  # noqa: E402
from rmbuild import loading as loader  # noqa: E402
from rmbuild.backends.iree import probe  # noqa: E402
from rmbuild.backends.iree.plugin import IREEBackend  # noqa: E402
from rmbuild.build import BuildResult, action_key, build, plan  # noqa: E402
from rmbuild.declare.spec import load_model_spec  # noqa: E402
from rmbuild.errors import IncompatibleArtifact, SpecError, ToolError  # noqa: E402
from rmbuild.runtime.tokenizer import Tokenizer  # noqa: E402

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[3]
MODEL_DIR = REPO_ROOT / "examples" / "tiny-llama" / "model"
PROMPT = "Once upon a time"
N_TOKENS = 32

MODEL_YAML = f"""\
name: tiny-llama
source:
  path: {MODEL_DIR}
  format: hf
targets:
  cpu: {{profile: iree-cpu}}
  cuda: {{profile: iree-cuda}}
  cuda86:
    profile: iree-cuda
    flags: {{cuda_target: sm_86}}
  bogus:
    profile: iree-cuda
    flags: {{cuda_target: sm_1}}
"""


class Built:
    def __init__(self, spec_path: Path, store: Store, cpu: BuildResult, cuda: BuildResult):
        self.spec_path = spec_path
        self.store = store
        self.cpu = cpu
        self.cuda = cuda


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("iree")
    with pytest.MonkeyPatch.context() as mp:
        # No user profiles or templates may shadow the built-in ones under test.
        mp.setenv("RMBUILD_CONFIG_DIR", str(root / "config"))
        spec_path = root / "model.yaml"
        spec_path.write_text(MODEL_YAML)
        store = Store(root / "store")
        spec = load_model_spec(spec_path)
        cpu = build(spec, "cpu", store=store)
        cuda = build(spec, "cuda", store=store)
        yield Built(spec_path, store, cpu, cuda)


def _metadata(built: Built) -> dict[str, Any]:
    return copy.deepcopy(built.store.get(built.cpu.artifact.key).metadata)


def _torch_greedy(prompt_ids: list[int], n: int) -> tuple[list[int], np.ndarray]:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(MODEL_DIR).eval()
    ids = list(prompt_ids)
    first = None
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids])).logits[0, -1]
            if first is None:
                first = logits.numpy().copy()
            ids.append(int(logits.argmax()))
    return ids[len(prompt_ids) :], first


# ----------------------------------------------------------------------------- building


def test_stages_and_outputs(built: Built) -> None:
    assert [s.profile for s in built.cpu.stages] == ["onnx-export", "iree-import", "iree-cpu"]
    files = built.store.get_manifest(built.cpu.artifact.manifest_digest).files
    assert "model.vmfb" in files and "tokenizer.json" in files and "config.json" in files
    meta = built.cpu.artifact.metadata
    assert meta["output_format"] == "iree-vmfb"
    assert "--iree-llvmcpu-target-cpu=host" in meta["argv"]


def test_import_stage_is_shared(built: Built) -> None:
    # iree-cuda after iree-cpu: export and import are hits, only the compile runs.
    assert [s.hit for s in built.cuda.stages] == [True, True, False]
    assert built.cuda.stages[1].key == built.cpu.stages[1].key


def test_host_cpu_resolved_into_the_key(built: Built) -> None:
    fp = built.cpu.artifact.metadata["fingerprint"]
    assert fp["backend"] == "llvm-cpu"
    assert fp["cpu"] and fp["cpu"] != "host"  # the LLVM CPU iree-compile picked for "host"
    assert fp["cpu_features"] == sorted(fp["cpu_features"])
    assert set(fp["cpu_features"]) <= probe.host_llvm_features()
    assert fp["format"] == probe.host_format()


def test_cuda_target_changes_the_key(built: Built) -> None:
    spec = load_model_spec(built.spec_path)
    inputs = {"model": "0" * 64}
    keys = {
        t: action_key(plan(spec, t)[-1], inputs, spec.root).compute() for t in ("cuda", "cuda86")
    }
    assert keys["cuda"] != keys["cuda86"]
    fp86 = action_key(plan(spec, "cuda86")[-1], inputs, spec.root).fingerprint
    assert fp86["arch"] == "sm_86"


def test_unknown_cuda_target_is_a_spec_error(built: Built) -> None:
    spec = load_model_spec(built.spec_path)
    with pytest.raises(SpecError, match="does not know the CUDA target 'sm_1'"):
        action_key(plan(spec, "bogus")[-1], {"model": "0" * 64}, spec.root)


def test_a_compiler_that_cannot_say_its_target_is_a_tool_error(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A key from a guessed target would differ from the real one: refuse instead of guessing.
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("iree-compile crashed")

    monkeypatch.setattr(probe, "resolve_llvmcpu", broken)
    monkeypatch.setattr(probe, "resolve_cuda", broken)
    spec = load_model_spec(built.spec_path)
    for target in ("cpu", "cuda"):
        with pytest.raises(ToolError, match="could not ask iree-compile .*crashed"):
            action_key(plan(spec, target)[-1], {"model": "0" * 64}, spec.root)


# ----------------------------------------------------------------------------- running


def test_cpu_generates_the_reference_tokens(built: Built) -> None:
    prompt_ids = Tokenizer(MODEL_DIR).encode(PROMPT)
    expected, first_logits = _torch_greedy(prompt_ids, N_TOKENS)
    with loader.load(built.cpu.artifact.key, store=built.store) as session:
        session.eos_token_ids = set()  # compare all 32 greedy tokens, EOS or not
        got = list(session.generate_ids(prompt_ids, N_TOKENS))
        session.step_fn.reset()
        logits = session.step_fn.step(np.asarray(prompt_ids, dtype=np.int64))
        assert session.info["backend"] == "iree"
    assert got == expected
    np.testing.assert_allclose(logits, first_logits, atol=1e-4, rtol=1e-4)


def test_session_text_and_reuse(built: Built) -> None:
    with loader.load(built.cpu.artifact.key, store=built.store, device="local-sync") as session:
        first = session.generate(PROMPT, 16)
        second = session.generate(PROMPT, 16)  # reset() must clear the KV cache
    assert first and first == second


def test_cuda_artifact_refused_without_a_gpu(built: Built) -> None:
    files = built.store.get_manifest(built.cuda.artifact.manifest_digest).files
    assert files["model.vmfb"].size > 0
    assert built.cuda.artifact.metadata["fingerprint"]["arch"] == "sm_80"
    devices, _ = probe.cuda_devices()
    if devices:
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(
        IncompatibleArtifact, match="built for CUDA sm_80; this machine has no CUDA device"
    ):
        loader.load(built.cuda.artifact.key, store=built.store)


def test_import_artifact_is_not_runnable(built: Built) -> None:
    with pytest.raises(IncompatibleArtifact, match="not a compiled .vmfb"):
        loader.load(built.cpu.stages[1].key, store=built.store)


# ----------------------------------------------------------------------------- compatibility


def test_missing_cpu_features_refused(built: Built) -> None:
    have = probe.host_llvm_features()
    lacking = [f for f in ("amx-tile", "avx512fp16", "avx10.2", "sve2", "avx512f") if f not in have]
    if not lacking:
        pytest.skip("this CPU has every candidate feature")
    meta = _metadata(built)
    meta["fingerprint"]["cpu_features"] = sorted([*meta["fingerprint"]["cpu_features"], lacking[0]])
    with pytest.raises(IncompatibleArtifact, match=f"features this CPU lacks: {lacking[0]}"):
        IREEBackend().check_compatible(meta)
    IREEBackend().check_compatible(_metadata(built))  # the real one is fine


def test_other_iree_release_refused(built: Built) -> None:
    meta = _metadata(built)
    meta["toolchain"]["packages"]["iree-base-compiler"] = "3.1.0"
    with pytest.raises(
        IncompatibleArtifact,
        match=r"compiled with IREE 3\.1\.0.*same IREE "
        "release",
    ):
        IREEBackend().check_compatible(meta)


def test_other_cpu_architecture_refused(built: Built) -> None:
    meta = _metadata(built)
    meta["fingerprint"]["format"] = "embedded-elf-riscv_64"
    with pytest.raises(IncompatibleArtifact, match="compiled for embedded-elf-riscv_64"):
        IREEBackend().check_compatible(meta)


def test_probe_and_availability() -> None:
    plugin = IREEBackend()
    avail = plugin.availability()
    assert avail.ok and avail.versions["iree-base-runtime"]
    resources = plugin.probe()  # must not raise without a GPU
    assert resources[0].type == "cpu" and resources[0].attributes["driver"] == "local-task"


def test_padded_past_gives_the_same_tokens(built: Built) -> None:
    # The CUDA workaround for zero-length tensors (one masked cache slot), checked on the CPU.
    prompt_ids = Tokenizer(MODEL_DIR).encode(PROMPT)
    runs = []
    for pad in (0, 1):
        with loader.load(built.cpu.artifact.key, store=built.store, pad_past=pad) as session:
            session.eos_token_ids = set()
            runs.append(list(session.generate_ids(prompt_ids, N_TOKENS)))
    assert runs[0] == runs[1]


def test_cuda_arch_rule(built: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    meta = copy.deepcopy(built.store.get(built.cuda.artifact.key).metadata)
    plugin = IREEBackend()

    def devices(arch: str):  # noqa: ANN202
        return lambda: ([{"name": "GPU", "arch": arch, "compute_capability": "x"}], "")

    monkeypatch.setattr(probe, "cuda_devices", devices("sm_75"))
    with pytest.raises(IncompatibleArtifact, match=r"built for CUDA sm_80; .*GPU \(sm_75\)"):
        plugin.check_compatible(meta)
    monkeypatch.setattr(probe, "cuda_devices", devices("sm_90"))
    plugin.check_compatible(meta)  # sm_80 PTX is JIT-compiled forward onto Hopper


def test_cpu_artifact_on_a_gpu_driver_is_refused(built: Built) -> None:
    with pytest.raises(IncompatibleArtifact, match="compiled for IREE's local device"):
        loader.load(built.cpu.artifact.key, store=built.store, device="cuda")


# ----------------------------------------------------------------------------- KV layout


def _vmfb_copy(built: Built, tmp_path: Path) -> Path:
    import shutil

    dest = tmp_path / "vmfb"
    shutil.copytree(built.store.materialize(built.cpu.artifact.key), dest)
    for path in dest.iterdir():
        path.chmod(0o644)
    return dest


def test_kv_layout_recorded_at_import_and_kept_by_the_compile(built: Built) -> None:
    # The import stage reads the layout from the ONNX graph; the .vmfb keeps it.
    from rmbuild.runtime import kvlayout

    files = built.store.get_manifest(built.cpu.artifact.manifest_digest).files
    assert "kv_layout.json" in files
    layout = kvlayout.read_sidecar(built.store.materialize(built.cpu.artifact.key))
    assert layout is not None and layout.past[0].shape[1] == 2  # the tiny Llama's KV heads
    with loader.load(built.cpu.artifact.key, store=built.store) as session:
        assert session.step_fn.layout.source == "kv_layout.json"


def test_wrong_kv_heads_is_exit_6_not_an_internal_error(built: Built, tmp_path: Path) -> None:
    # An artifact without the sidecar, whose config misstates the KV heads (Falcon
    # multi_query), was fed 4 heads where the graph wants 2: the module's refusal was retried
    # with fp16 and reported as "element type mismatch ... f16", exit 1. Now: the first error,
    # exit 6, naming the input with the expected and given shapes.
    import json

    from rmbuild.backends.iree.runtime import IREEDecoderStep
    from rmbuild.errors import EXIT_INCOMPATIBLE, ArtifactInputMismatch

    tree = _vmfb_copy(built, tmp_path)
    (tree / "kv_layout.json").unlink()
    config = json.loads((tree / "config.json").read_text())
    config["num_key_value_heads"] = 4
    (tree / "config.json").write_text(json.dumps(config))
    step = IREEDecoderStep(tree / "model.vmfb")
    with pytest.raises(ArtifactInputMismatch) as err:
        step.step(np.asarray([1, 2, 3], dtype=np.int64))
    assert err.value.exit_code == EXIT_INCOMPATIBLE
    assert err.value.input == "past_key_values.0.key"
    assert (err.value.expected, err.value.given) == ("1x2x0x32", "1x4x0x32")
    assert "f16" not in err.value.message  # no retry with another dtype
    step.close()


def test_wrong_cache_dtype_is_the_first_error(built: Built, tmp_path: Path) -> None:
    from rmbuild.backends.iree.runtime import IREEDecoderStep
    from rmbuild.errors import ArtifactInputMismatch

    tree = _vmfb_copy(built, tmp_path)
    (tree / "kv_layout.json").unlink()
    step = IREEDecoderStep(tree / "model.vmfb", options={"kv_dtype": "float16"})
    with pytest.raises(ArtifactInputMismatch, match="expects f32, rmbuild gave f16"):
        step.step(np.asarray([1, 2, 3], dtype=np.int64))
    step.close()
