"""Filesystem failures and message gaps of issue 15: one line, a non-zero exit, no
traceback and no half-written output."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from baler_ext.cli import main
from baler_ext.errors import (
    FILESYSTEM_EXIT,
    ConfigError,
    ContainerError,
    InputDataError,
    ModelError,
    ProjectError,
)
from baler_ext.project import atomic_path, remove_stale_parts

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A trained and compressed bounded-mode project (the fuzzer's)."""
    from benchmarks.fuzz_containers import build_project

    return build_project(tmp_path_factory.mktemp("failures"))


@pytest.fixture
def projects(built: Path, tmp_path: Path) -> Path:
    out = tmp_path / "projects"
    shutil.copytree(built, out)
    return out


def one_clean_line(caplog, capsys, *fragments: str) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, caplog.text
    text = errors[0].getMessage()
    assert "\n" not in text
    for fragment in fragments:
        assert fragment in text, text
    assert "Traceback" not in capsys.readouterr().err


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() raises it: no path


# --------------------------------------------------------------------------- full disk


def test_disk_full_during_compress(cli, projects, monkeypatch, caplog, capsys):
    from baler_ext.codec.container import ContainerWriter

    out = projects / "fuzz" / "output" / "compressed"
    shutil.rmtree(out)
    monkeypatch.setattr(ContainerWriter, "_frame", _enospc)
    with caplog.at_level(logging.ERROR):
        assert cli(projects, "fuzz", "compress") == FILESYSTEM_EXIT
    one_clean_line(caplog, capsys, str(out / "jets.baler"), "disk is full")
    assert not any(out.iterdir())  # neither the container nor its .part file


def test_disk_full_during_decompress(cli, projects, monkeypatch, caplog, capsys):
    from baler_ext.io.source import OutputWriter

    monkeypatch.setattr(OutputWriter, "write", _enospc)
    with caplog.at_level(logging.ERROR):
        assert cli(projects, "fuzz", "decompress") == FILESYSTEM_EXIT
    out = projects / "fuzz" / "output" / "decompressed"
    one_clean_line(caplog, capsys, str(out / "jets.parquet"), "disk is full")
    assert not list(out.iterdir())


def test_read_only_output_folder(cli, projects, monkeypatch, caplog, capsys):
    out = projects / "fuzz" / "output" / "decompressed"
    out.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # root writes through chmod: inject what a read-only mount says
        import baler_ext.project as project_mod

        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(out))

        monkeypatch.setattr(project_mod.tempfile, "mkstemp", read_only)
        reason = "read-only"
    else:
        out.chmod(0o555)
        reason = "permission denied"
    try:
        with caplog.at_level(logging.ERROR):
            assert cli(projects, "fuzz", "decompress") == FILESYSTEM_EXIT
    finally:
        out.chmod(0o755)
    one_clean_line(caplog, capsys, str(out), reason)
    assert not list(out.iterdir())


def test_truncated_root_input(cli, tmp_path, caplog, capsys):
    uproot = pytest.importorskip("uproot")
    rng = np.random.default_rng(0)
    path = tmp_path / "events.root"
    with uproot.recreate(path) as f:
        f["t"] = {"pt": rng.exponential(50, 200_000), "eta": rng.normal(0, 1, 200_000)}
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    (tmp_path / "projects" / "p").mkdir(parents=True)
    (tmp_path / "projects" / "p" / "config.toml").write_text(
        f'[data]\ninput = ["{path}"]\n[training]\nepochs = 1\n'
    )
    with caplog.at_level(logging.ERROR):
        code = cli(tmp_path / "projects", "p", "train")
    assert code in (FILESYSTEM_EXIT, InputDataError.exit_code)
    one_clean_line(caplog, capsys, str(path))


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_fsyncs_before_rename(tmp_path, monkeypatch):
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("rename"), real_replace(a, b))[1])
    with atomic_path(tmp_path / "out.bin") as tmp:
        tmp.write_bytes(b"data")
    assert calls[:2] == ["fsync", "rename"]
    assert (tmp_path / "out.bin").read_bytes() == b"data"


def test_stale_part_files_of_the_same_output_are_removed(tmp_path):
    final = tmp_path / "jets.baler"
    dead = tmp_path / f".jets.baler.{os.uname().nodename.replace('.', '_')}-999999999.x1.part"
    old = tmp_path / ".jets.baler.otherhost-12.x2.part"
    fresh = tmp_path / ".jets.baler.otherhost-13.x3.part"  # another host, still writing
    mine = tmp_path / f".jets.baler.{os.uname().nodename.replace('.', '_')}-{os.getpid()}.x4.part"
    other_output = tmp_path / ".jets.baler.info.json.otherhost-12.x5.part"
    for p in (dead, old, fresh, mine, other_output):
        p.write_bytes(b"partial")
    hour_ago = time.time() - 7200
    os.utime(old, (hour_ago, hour_ago))
    os.utime(other_output, (hour_ago, hour_ago))
    removed = remove_stale_parts(final)
    assert sorted(removed) == sorted([dead, old])
    assert fresh.exists() and mine.exists() and other_output.exists()


# --------------------------------------------------------------------------- inputs


def _table(path: Path) -> None:
    rng = np.random.default_rng(1)
    pq.write_table(pa.table({"pt": rng.exponential(50, 400), "eta": rng.normal(0, 1, 400)}), path)


def test_existing_file_name_wins_over_glob(tmp_path):
    from baler_ext.config import config_from_dict
    from baler_ext.io.source import resolve_inputs

    path = tmp_path / "jets [1].parquet"
    _table(path)
    _table(tmp_path / "jets 1.parquet")  # what the glob reading would match instead
    cfg = config_from_dict({"data": {"input": [path.name]}}, "test", tmp_path / "c.toml")
    assert resolve_inputs(cfg) == [path]


def test_folder_as_input_says_so(tmp_path):
    from baler_ext.config import config_from_dict
    from baler_ext.io.source import resolve_inputs

    (tmp_path / "data").mkdir()
    cfg = config_from_dict({"data": {"input": ["data"]}}, "test", tmp_path / "c.toml")
    with pytest.raises(InputDataError, match="is a folder, not a file"):
        resolve_inputs(cfg)


def test_missing_relative_input_explains_relative_paths(tmp_path):
    from baler_ext.config import config_from_dict
    from baler_ext.io.source import resolve_inputs

    cfg = config_from_dict({"data": {"input": ["nope.parquet"]}}, "test", tmp_path / "c.toml")
    with pytest.raises(InputDataError, match="relative to the config's folder"):
        resolve_inputs(cfg)


def test_invalid_toml_in_set_is_an_error(tmp_path):
    from baler_ext.config import parse_override

    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_override('data.columns=["pt",')
    assert parse_override("model.name=sae") == (["model", "name"], "sae")  # bare word: a string


def test_missing_project_names_the_projects_dir(tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.ERROR):
        assert main(["--project", "elsewhere", "--mode", "train", "-q"]) == ProjectError.exit_code
    one_clean_line(caplog, capsys, "--projects-dir", str(tmp_path / "projects"), "new_project")


def test_ctrl_c_in_training_suggests_resume(cli, tmp_path, monkeypatch, caplog, capsys):
    from baler_ext import cli as cli_mod

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_mod, "run", interrupted)
    with caplog.at_level(logging.ERROR):
        assert cli(tmp_path, "p", "train") == 130
    one_clean_line(caplog, capsys, "--resume")


def test_deeply_nested_cut_is_a_config_error():
    from baler_ext.analysis.selection import validate_cut

    with pytest.raises(ConfigError, match="nests deeper"):
        validate_cut("~" * 990 + "pt")
    validate_cut("~" * 20 + "(pt > 3)")  # moderate nesting still works


def test_normaliser_overflow_is_explained():
    from baler_ext.normalise import Normaliser

    values = np.random.default_rng(0).uniform(-1, 1, (100, 2)) * [1e300, 1.0]
    with pytest.raises(InputDataError, match="normalisation of a overflows float64"):
        Normaliser.fit(values, ["a", "b"], "standard")


# --------------------------------------------------------------------------- model files


def test_pickle_payload_as_weights_is_a_clean_model_error(cli, projects, caplog, capsys):
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned > /dev/null",))

    weights = projects / "fuzz" / "output" / "model" / "weights.pt"
    weights.write_bytes(pickle.dumps(Payload()))
    with caplog.at_level(logging.ERROR):
        assert cli(projects, "fuzz", "decompress") == ModelError.exit_code
    one_clean_line(caplog, capsys, "cannot be read", "retrain")


def test_damaged_model_json_is_a_clean_model_error(cli, projects, caplog, capsys):
    (projects / "fuzz" / "output" / "model" / "model.json").write_text("{not json")
    with caplog.at_level(logging.ERROR):
        assert cli(projects, "fuzz", "decompress") == ModelError.exit_code
    one_clean_line(caplog, capsys, "cannot be read", "retrain")


# --------------------------------------------------------------------------- containers


def _container(projects: Path) -> Path:
    return projects / "fuzz" / "output" / "compressed" / "jets.baler"


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (10, b"\x09\x00", "upgrade baler_ext"),  # minor version from the future
        (12, b"\x01\x00\x00\x00", "preamble flags"),  # an unknown flag
    ],
)
def test_preamble_minor_version_and_flags_are_checked(
    cli, projects, caplog, offset, value, message
):
    path = _container(projects)
    data = bytearray(path.read_bytes())
    data[offset : offset + len(value)] = value
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR):
        assert cli(projects, "fuzz", "decompress") == ContainerError.exit_code
    assert message in caplog.text


# exc_idx: test_digest.py; "/head" is a static stream's (the learned path stores "lrn/.../bits")
@pytest.mark.parametrize("suffix", ["/bits", "/sign", "/centre"])
def test_removed_or_renamed_residual_sections_fail(cli, projects, caplog, suffix):
    from benchmarks.fuzz_containers import build, parse

    path = _container(projects)
    parsed = parse(path.read_bytes())
    hits = [i for i, s in enumerate(parsed.index["sections"]) if s["name"].endswith(suffix)]
    if not hits:
        pytest.skip(f"this container has no {suffix} section")
    for how in ("remove", "rename"):
        q = parse(path.read_bytes())
        if how == "remove":
            del q.frames[hits[0]], q.index["sections"][hits[0]]
        else:
            q.index["sections"][hits[0]]["name"] += "_x"
        path.write_bytes(build(q))
        with caplog.at_level(logging.ERROR):
            assert cli(projects, "fuzz", "decompress") == ContainerError.exit_code
        assert "jets.baler" in caplog.text


def test_crafted_section_content_fails_the_digest(cli, projects, caplog):
    """A value changed in a section with every checksum recomputed decodes to other
    numbers: the content digest refuses it."""
    from benchmarks.fuzz_containers import build, frame, parse

    path = _container(projects)
    q = parse(path.read_bytes())
    i = next(
        i
        for i, s in enumerate(q.index["sections"])
        if s["name"] in ("pred/centre", "latent/lo") and s["chunk"] == 0
    )
    arr = np.frombuffer(zstandard.ZstdDecompressor().decompress(q.frames[i]), "<f8").copy()
    arr[0] += 1e-3 * max(abs(arr[0]), 1.0)
    q.frames[i] = frame(arr.tobytes())
    path.write_bytes(build(q))
    with caplog.at_level(logging.ERROR):
        assert cli(projects, "fuzz", "decompress") == ContainerError.exit_code
    assert "differ from those recorded at compress time" in caplog.text


def test_embedded_decoder_is_verified_by_info_and_decompress(cli, projects, caplog):
    from benchmarks.fuzz_containers import build, frame, parse

    path = _container(projects)
    original = path.read_bytes()
    q = parse(original)
    i = next(i for i, s in enumerate(q.index["sections"]) if s["name"].startswith("decoder/"))
    # a flipped byte (CRC not recomputed): info refuses it
    data = bytearray(original)
    data[q.index["sections"][i]["offset"] + 5] ^= 0x40
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR):
        assert cli(projects, "fuzz", "info") == ContainerError.exit_code
    # a crafted tensor with valid checksums: decompress compares it with the model
    arr = np.frombuffer(
        zstandard.ZstdDecompressor().decompress(q.frames[i]), q.index["sections"][i]["dtype"]
    ).copy()
    arr.reshape(-1)[0] += 1
    q.frames[i] = frame(arr.tobytes())
    path.write_bytes(build(q))
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert cli(projects, "fuzz", "decompress") == ContainerError.exit_code
    assert "embedded decoder" in caplog.text


def test_typo_in_set_blames_the_set_not_the_file(tmp_path):
    from baler_ext.config import load_config

    path = tmp_path / "config.toml"
    path.write_text("[training]\nepochs = 1\n")
    with pytest.raises(ConfigError, match=r"^--set 'training.epoch=3': unknown key") as exc:
        load_config(path, ["training.epoch=3"])
    assert "epochs" in str(exc.value)  # the suggestion
    with pytest.raises(ConfigError, match=r"^--set 'trainin.epochs=3': unknown section"):
        load_config(path, ["trainin.epochs=3"])
    path.write_text("[training]\nepoch = 1\n")  # a typo in the file still names the file
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path, ["training.seed=3"])


def test_files_before_digests_still_decode_but_new_ones_need_them(cli, projects, caplog):
    """A format 1.1 file (no digests) decodes as before; a 1.2 file whose digest was
    stripped is refused."""
    from benchmarks.fuzz_containers import build, parse

    path = _container(projects)
    q = parse(path.read_bytes())
    for chunk in q.index["header"]["chunks"]:
        del chunk["digest"]
    del q.index["header"]["decode_platform"]
    stripped = bytearray(build(q))
    path.write_bytes(bytes(stripped))
    with caplog.at_level(logging.ERROR):
        assert cli(projects, "fuzz", "decompress") == ContainerError.exit_code
    assert "chunk 0 has no content digest" in caplog.text
    stripped[10:12] = (1).to_bytes(2, "little")  # minor version 1
    path.write_bytes(bytes(stripped))
    assert cli(projects, "fuzz", "decompress") == 0


def test_a_1_3_header_with_listed_cpu_features_and_a_float_sketch_still_decodes(
    cli, projects, caplog
):
    """Files of format 1.3 list the CPU features in ``decode_platform`` and store the
    sketch as base64 float64: both are still read, strictly on the same platform and
    within drift elsewhere, and restore the same values as the 1.4 file."""
    import base64

    from baler_ext.codec import digest
    from benchmarks.fuzz_containers import build, parse

    path = _container(projects)
    assert cli(projects, "fuzz", "decompress") == 0
    out = next((projects / "fuzz" / "output" / "decompressed").iterdir())
    want = pq.read_table(out)
    q = parse(path.read_bytes())
    header = q.index["header"]
    assert isinstance(header["decode_platform"]["cpu"], str)
    for chunk in header["chunks"]:
        sketch = chunk["digest"]["sketch"]
        floats = np.ldexp(np.array(sketch["q"], float), sketch["exp"])
        chunk["digest"]["sketch"] = base64.b64encode(floats.astype("<f8").tobytes()).decode()
    listed = list(digest._host_fingerprint()["cpu"])
    exact = [chunk["digest"]["xxh3"] for chunk in header["chunks"]]
    for cpu, strict in ((listed, True), (listed[:-1], False)):
        header["decode_platform"]["cpu"] = cpu
        for chunk, h in zip(header["chunks"], exact, strict=True):
            # elsewhere, as if the decode had drifted: only stable and sketch can match
            chunk["digest"]["xxh3"] = h if strict else "0" * 32
        old = bytearray(build(q))
        old[10:12] = (3).to_bytes(2, "little")  # minor version 3
        path.write_bytes(bytes(old))
        out.unlink()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="baler_ext"):
            assert cli(projects, "fuzz", "decompress") == 0
        assert pq.read_table(out).equals(want)
        assert ("within cross-platform drift" in caplog.text) is not strict, caplog.text
