"""Versions of the network in one repository: stage a candidate, load it beside live, or refuse it.

A candidate becomes ``sparseinst/<N>`` (the next free number) and gets its own ensembles
``sparseinst_pipeline_v<N>`` (and ``sparseinst_video_v<N>`` where the repository serves video)
pinned to it. Loading it never touches what live traffic uses:
the network is reloaded with the new version folder (Triton keeps the loaded versions serving;
``tests/test_rollout.py`` checks that a live ensemble answers throughout), then the new ensemble is
loaded. A candidate that fails anywhere (wrong tensors, a file ONNX Runtime cannot read, a
Triton load error) is removed again and the error says why; live keeps serving.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from pipeline.errors import PipelineError
from pipeline.paths import checked_file
from pipeline.serving import contract
from pipeline.serving.control import control_headers
from pipeline.serving.repository import FIRST_VERSION, PYTHON_MODELS, read_spec, render_ensemble, score_threshold_of

log = logging.getLogger(__name__)


class CandidateError(PipelineError):
    """A candidate version was refused or failed to load; live serving is unchanged."""


def ensemble_name(version: int) -> str:
    """The ensemble that runs network ``version`` (the repository's first version keeps the plain name)."""
    return contract.ENSEMBLE if version == FIRST_VERSION else f"{contract.ENSEMBLE}_v{version}"


def network_versions(repository: Path) -> list[int]:
    folder = Path(repository) / contract.NETWORK
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()) if folder.is_dir() else []


def repository_target(repository: Path) -> str:
    text = (Path(repository) / contract.NETWORK / "config.pbtxt").read_text()
    return "gpu" if "tensorrt_plan" in text else "cpu"


def pinned_version(ensemble_config: dict) -> str | None:
    """The network version an ensemble's config (Triton's JSON form) pins; None when it follows the policy."""
    for step in ensemble_config.get("ensemble_scheduling", {}).get("step", []):
        if step.get("model_name") == contract.NETWORK:
            version = int(step.get("model_version", -1))
            return str(version) if version > 0 else None
    return None


@dataclass(frozen=True)
class StagedVersion:
    version: int
    ensemble: str
    folders: tuple[Path, ...]  # what staging added to the repository (removed again if the load fails)


def _session(path: Path):
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise CandidateError(f"{path}: ONNX Runtime cannot load it: {exc}") from None


def check_onnx(path: Path, spec: contract.ModelSpec) -> None:
    """The candidate's ONNX file has the network's tensors (names, and shapes past the batch)."""
    session = _session(path)
    io = contract.models(spec)[contract.NETWORK]
    names = {t.name for t in session.get_inputs()}
    missing = [t.name for t in io.inputs if t.name not in names]
    if missing:
        raise CandidateError(f"{path}: no input {missing[0]!r}: a candidate needs the live version's tensors")
    # shapes of a real run (dims may be symbolic in the file)
    import numpy as np

    feed = {t.name: np.zeros((1, *t.dims), dtype=np.float32) for t in io.inputs}
    try:
        outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
    except Exception as exc:
        raise CandidateError(f"{path}: fails on a {list(io.inputs[0].dims)} input: {exc}") from None
    for t in io.outputs:
        if t.name not in outputs:
            raise CandidateError(f"{path}: no output {t.name!r}: a candidate needs the live version's tensors")
        got = tuple(outputs[t.name].shape[1:])
        if len(got) != len(t.dims) or any(d not in (-1, g) for d, g in zip(t.dims, got)):
            raise CandidateError(f"{path}: output {t.name} is {list(got)} past the batch, "
                                 f"live's is {list(t.dims)} (Triton shares one config across versions)")  # fmt: skip


MAX_CANDIDATE_BYTES = 4 * 1024**3  # an official R-50 ONNX file is about 130 MB; a plan is of the same order


def candidate_file(path: Path | None, what: str, max_bytes: int = MAX_CANDIDATE_BYTES) -> Path | None:
    """A candidate's file, if given: a regular file within the size limit, not a link out of its folder."""
    if path is None:
        return None
    return checked_file(path, what=what, max_bytes=max_bytes, inside_folder=True, error=CandidateError)


def stage_candidate(repository: Path, *, weights: Path | None = None, onnx: Path | None = None,
                    plan: Path | None = None, arch: str | None = None) -> StagedVersion:  # fmt: skip
    """Add a candidate as the next network version with its own ensemble; nothing is loaded yet."""
    repository = Path(repository)
    weights, onnx = candidate_file(weights, "checkpoint"), candidate_file(onnx, "ONNX file")
    plan = candidate_file(plan, "TensorRT plan")
    spec = read_spec(repository)
    target = repository_target(repository)
    if (weights is None) == (onnx is None):
        raise CandidateError("give the candidate as a checkpoint (--weights) or an ONNX file (--onnx)")
    if target == "gpu" and plan is None:
        raise CandidateError("this is a GPU repository: give the candidate's TensorRT plan (--plan), built with "
                             "'sparseinst-pipeline model build-engine' from its ONNX file")  # fmt: skip
    if "version_policy: { all" not in (repository / contract.NETWORK / "config.pbtxt").read_text():
        raise CandidateError(f"{repository} serves one version at a time (rendered before versions were kept side "
                             "by side): render it again with 'sparseinst-pipeline repo build'")  # fmt: skip
    version = max(network_versions(repository) or [0]) + 1
    with tempfile.TemporaryDirectory() as tmp:
        if weights is not None:
            onnx = _export(Path(weights), arch, spec, Path(tmp) / "model.onnx")
        assert onnx is not None
        served = _served(Path(onnx), Path(tmp) / "served.onnx", score_threshold_of(repository))
        check_onnx(served, spec)
        folder = repository / contract.NETWORK / str(version)
        folder.mkdir(parents=True)
        shutil.copy2(served, folder / "model.onnx")
    if plan is not None:
        shutil.copy2(plan, folder / "model.plan")
    module = PYTHON_MODELS[target].get(contract.NETWORK)  # type: ignore[index]
    if module:
        shutil.copy2(repository / contract.NETWORK / str(FIRST_VERSION) / "model.py", folder / "model.py")
    name = ensemble_name(version)
    ensembles = [(name, False)]
    if (repository / contract.VIDEO_ENSEMBLE).is_dir():  # repositories rendered before video have no segment path
        ensembles.append((contract.video_ensemble(name), True))
    folders = [folder]
    for ens_name, video in ensembles:
        ens = repository / ens_name
        (ens / "1").mkdir(parents=True, exist_ok=True)
        (ens / "config.pbtxt").write_text(render_ensemble(spec, ens_name, version, video=video))
        folders.append(ens)
    log.info("staged %s version %d in %s with ensembles %s", contract.NETWORK, version, repository,
             ", ".join(n for n, _ in ensembles))  # fmt: skip
    return StagedVersion(version, name, tuple(folders))


def _served(onnx: Path, out: Path, score_threshold: float) -> Path:
    """The candidate's network as it is served: a raw export gets the live version's kept-instance selection."""
    from pipeline.serving.selection import is_served, write_served_network

    _session(onnx)  # a file ONNX Runtime cannot load is refused as such, before anything reads it
    try:
        return onnx if is_served(onnx) else write_served_network(onnx, out, score_threshold)
    except Exception as exc:
        raise CandidateError(f"{onnx}: not an exported SparseInst network ({type(exc).__name__}: {exc})") from None


def _export(weights: Path, arch: str | None, spec: contract.ModelSpec, out: Path) -> Path:
    from pipeline.model.checkpoint import load_model
    from pipeline.model.export import export_onnx
    from pipeline.model.shipped import resolve_weights

    try:
        model = load_model(resolve_weights(weights), arch)
    except Exception as exc:
        raise CandidateError(f"{weights}: cannot load the checkpoint: {exc}") from None
    export_onnx(model, out, height=spec.input_height, width=spec.input_width)
    return out


def load_candidate(http_url: str, repository: Path, staged: StagedVersion, live_ensemble: str, *,
                   control_key: SecretStr | None = None) -> None:  # fmt: skip
    """Load a staged version and its ensemble; on failure remove it again and raise why."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    headers = control_headers(control_key)
    client = httpclient.InferenceServerClient(http_url)
    try:
        client.load_model(contract.NETWORK, headers=headers)
        for ens in staged.folders[1:]:  # the image ensemble, then the segment ensemble where there is one
            client.load_model(ens.name, headers=headers)
            if not client.is_model_ready(ens.name):
                raise CandidateError(f"{ens.name} loaded but is not ready")
    except (InferenceServerException, CandidateError) as exc:
        reason = _first_line(exc.message() if isinstance(exc, InferenceServerException) else str(exc))
        for folder in staged.folders:
            shutil.rmtree(folder, ignore_errors=True)
        try:
            # forget the failed version; the loaded ones stay as they were
            client.load_model(contract.NETWORK, headers=headers)
        except InferenceServerException as again:
            log.warning("reloading %s without the failed version: %s", contract.NETWORK, _first_line(again.message()))
        live = "still serving" if client.is_model_ready(live_ensemble) else "NOT READY"
        raise CandidateError(f"version {staged.version} failed to load: {reason} (removed from {repository}; "
                             f"live ensemble {live_ensemble}: {live})") from None  # fmt: skip
    finally:
        client.close()


def _first_line(text: str) -> str:
    return re.split(r"\n\s*\n|\nAt:", text.strip(), maxsplit=1)[0].strip()
