"""Hostile files to the commands that use a model (issue 26, classes 2, 4, 5, 8, 9), as real
subprocesses: images and index files that would take gigabytes or make an answer lie, the exported
graph on an empty batch and on non-finite pixels, the index file's mode, and the served page.

The table runs through the one harness (tests/helpers/table.py): each case asserts exit status 2,
exactly one `error: ` line matching its pattern, no traceback, and a peak RSS at most
MEMORY_MARGIN_MIB above the same command's on plain input, run in the same table.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from siamese_lit import PROJECT_ROOT
from siamese_lit.data.mnist import load_mnist
from tests.helpers.hostile_files import GRAY, RGBA, index_parts, write_index, write_index_with_list, write_png
from tests.helpers.runs import cli_env, run_cli
from tests.helpers.table import (
    MEMORY_MARGIN_MIB,
    Case,
    Run,
    assert_memory_bounded,
    assert_refused,
    case,
    run_cases,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, tiny_siamese_run: Path, data_dir: Path
) -> dict[str, Path]:
    """The checkpoint, two MNIST digits, a real index of 200 MNIST digits, and the hostile files."""
    from siamese_lit.inference import SiameseModel
    from siamese_lit.inference.gallery import mnist_gallery
    from siamese_lit.inference.index import save_index

    root = tmp_path_factory.mktemp("hostile")
    w = {"siamese": tiny_siamese_run / "checkpoints" / "last.ckpt", "out": root / "out"}
    w["out"].mkdir()
    images = load_mnist(data_dir, train=False)[0]
    for name, i in (("digit_a", 0), ("digit_b", 1)):
        w[name] = root / f"{name}.png"
        Image.fromarray(images[i].numpy()).save(w[name])
    model = SiameseModel.from_checkpoint(w["siamese"], "cpu")
    items = mnist_gallery(data_dir, 200)
    index = model.build_index(items.digits, items.labels, items.sources)
    save_index(index, w.setdefault("index", root / "index.safetensors"))
    meta, emb = index_parts(w["index"])

    # class 2: a few hundred kilobytes that decode to gigabytes
    w["png16"] = write_png(root / "png16.png", 9400, 9400, 16, GRAY, b"\xff" * 600)
    w["rgba144"] = write_png(root / "rgba144.png", 12000, 12000, 8, RGBA, b"\xff" * 4000)
    w["bilevel144"] = write_png(root / "bilevel144.png", 12000, 12000, 1, GRAY, b"\xff" * 100)
    w["gallery_bilevel"] = root / "gallery"
    (w["gallery_bilevel"] / "7").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(images[i].numpy()).save(w["gallery_bilevel"] / "7" / f"{i}.png")
    os.link(w["bilevel144"], w["gallery_bilevel"] / "7" / "bilevel144.png")
    w["labels_30m"] = write_index_with_list(root / "labels_30m.idx", meta, emb, "labels", "{}", 30_000_000)
    w["sources_lists"] = write_index_with_list(
        root / "sources_lists.idx", meta, emb, "sources", "[]", 3_000_000
    )

    # class 4: fields that would make an answer lie
    forged = {
        "threshold_negative": {**meta, "threshold": -1},
        "label_unknown": {**meta, "labels": ["unknown", *meta["labels"][1:]]},
        "label_newline": {**meta, "labels": ["1\n| 7 | forged row", *meta["labels"][1:]]},
        "source_escape": {**meta, "sources": ["\x1b[2Jcleared", *meta["sources"][1:]]},
    }
    for name, fields in forged.items():
        w[name] = write_index(root / f"{name}.idx", fields, emb)
    w["huge_embeddings"] = write_index(root / "huge_embeddings.idx", meta, torch.full_like(emb, 1e30))
    # finite norms (about 1.6e19 at D=10), but squared distances past float32
    w["norm_past_bound"] = write_index(root / "norm_past_bound.idx", meta, torch.full_like(emb, 5e18))
    w["threshold_overflow"] = root / "threshold_overflow.idx"  # 1e400 is JSON for a float, inf
    text = json.dumps({**meta, "threshold": 12345.5}).replace("12345.5", "1e400")
    from safetensors.torch import save_file

    from siamese_lit.inference.index_file import FORMAT

    save_file({"embeddings": emb}, str(w["threshold_overflow"]), metadata={"format": FORMAT, "index": text})
    nan = np.zeros((28, 28), np.float32)
    nan[6:22, 12:16] = 1.0
    nan[0, 0] = np.nan
    w["nan_tiff"] = root / "nan.tiff"
    Image.fromarray(nan, "F").save(w["nan_tiff"])
    return w


COMPARE = "ckpt_path=<siamese> device=cpu"
SEARCH = "device=cpu ckpt_path=<siamese> index_path="
DECODED = r"image takes \d+ MiB decoded, more than the \d+ MiB an image may: refused before decoding"
NOT_A_LABEL = r"is not a name of 1 to \d+ printable characters other than 'unknown'"
OVERFLOW = r"holds embeddings of norm .*, whose distances overflow float32"
THRESHOLD = r"field 'threshold' must be a finite number >= 0, or null"

#: hostile inputs: each is one `error:` line and exit 2
CASES = [
    # class 2: small files, gigabytes decoded
    case(
        "png16-9400-compare",
        "compare",
        f"{COMPARE} <png16> <digit_a>",
        rf"png16\.png: a 9400x9400 I;16 {DECODED}",
    ),
    case(
        "rgba-144mpx-search",
        "search",
        f"{SEARCH}<index> <rgba144> <digit_a>",
        rf"1 of the query images could not be read .*rgba144\.png \(a 12000x12000 RGBA {DECODED}",
    ),
    case("header-30m-labels-search", "search", f"{SEARCH}<labels_30m> <digit_a>", r"refused unparsed"),
    # variants: a 1-bit image (1 bit a pixel in the file, bytes decoded) in a gallery; lists as sources
    case(
        "bilevel-144mpx-index",
        "index",
        "ckpt_path=<siamese> device=cpu gallery=<gallery_bilevel> index_path=<out>/bilevel.idx",
        rf"1 gallery images could not be read .*bilevel144\.png \(a 12000x12000 1 {DECODED}",
    ),
    case(
        "header-3m-source-lists-search", "search", f"{SEARCH}<sources_lists> <digit_a>", r"refused unparsed"
    ),
    # class 4: answers that lie
    case("threshold-negative-search", "search", f"{SEARCH}<threshold_negative> <digit_a>", THRESHOLD),
    case(
        "label-unknown-search",
        "search",
        f"{SEARCH}<label_unknown> <digit_a>",
        rf"label 'unknown' {NOT_A_LABEL}",
    ),
    case(
        "label-newline-search",
        "search",
        f"{SEARCH}<label_newline> <digit_a>",
        rf"label '1\\n\| 7.*' {NOT_A_LABEL}",
    ),
    case("huge-embeddings-search", "search", f"{SEARCH}<huge_embeddings> <digit_a>", OVERFLOW),
    case(
        "nan-pixel-tiff-compare",
        "compare",
        f"{COMPARE} <nan_tiff> <digit_a>",
        r"nan\.tiff holds non-finite pixels",
    ),
    # variants: a threshold JSON reads as infinity, finite norms whose squares overflow, a terminal escape
    case("threshold-1e400-search", "search", f"{SEARCH}<threshold_overflow> <digit_a>", THRESHOLD),
    case("norm-past-bound-search", "search", f"{SEARCH}<norm_past_bound> <digit_a>", OVERFLOW),
    case(
        "source-escape-search",
        "search",
        f"{SEARCH}<source_escape> <digit_a>",
        r"holds a line break or control character",
    ),
]

#: The same commands on plain input (exit 0): the baseline of each module's peak RSS.
BARE = {
    "compare": case("bare-compare", "compare", f"{COMPARE} <digit_a> <digit_b>", r"", rc=0),
    "search": case("bare-search", "search", f"{SEARCH}<index> <digit_a>", r"", rc=0),
    "index": case(
        "bare-index",
        "index",
        "ckpt_path=<siamese> device=cpu gallery_size=200 index_path=<out>/bare.idx",
        r"",
        rc=0,
    ),
}
#: class 8: the index file is written with 0666 & ~umask, as every other output
UMASKS = {
    umask: case(
        f"umask-{umask:03o}",
        "index",
        f"ckpt_path=<siamese> device=cpu gallery_size=50 index_path=<out>/mode-{umask:03o}.idx",
        r"",
        rc=0,
        umask=umask,
    )
    for umask in (0o002, 0o027)
}


@pytest.fixture(scope="module")
def runs(world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every case, the bare commands and the umask cases, as `python -m siamese_lit.<module>`."""
    return run_cases(
        [*CASES, *BARE.values(), *UMASKS.values()], world, tmp_path_factory.mktemp("hostile_runs")
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_one_error_line_exit_2_and_bounded_memory(case: Case, runs: dict[str, Run]) -> None:
    run, bare = runs[case.id], runs[BARE[case.module].id]
    assert_refused(BARE[case.module], bare.result)
    assert_refused(case, run.result)
    assert "inf" not in run.result.stdout.split(), (
        run.result.stdout
    )  # no infinite distance printed as an answer
    assert_memory_bounded(case.id, run, bare)


@pytest.mark.parametrize("umask", UMASKS, ids=[c.id for c in UMASKS.values()])
def test_index_file_mode_follows_the_umask(umask: int, world: dict[str, Path], runs: dict[str, Run]) -> None:
    assert_refused(UMASKS[umask], runs[UMASKS[umask].id].result)
    path = world["out"] / f"mode-{umask:03o}.idx"
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# class 5: the exported graph in onnxruntime, on an empty batch and on non-finite pixels
ORT_CHECK = r"""
import json, sys
import numpy as np
import onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
run = lambda x: s.run(["embedding"], {"pixels": x.astype(np.float32)})[0]
x = np.load(sys.argv[2])
print(json.dumps({"empty": list(run(x[:0]).shape), "batch": run(x).tolist()}))
"""


def test_exported_graph_answers_an_empty_batch_and_agrees_with_pytorch_on_non_finite_pixels(
    world: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    from siamese_lit.inference import SiameseModel
    from siamese_lit.inference.onnx_export import PixelEncoder

    onnx_path = tmp_path / "encoder.onnx"
    export = run_cli(
        "siamese_lit.export", [f"ckpt_path={world['siamese']}", "check_images=8", f"output={onnx_path}"]
    )
    assert export.returncode == 0, export.stderr[-2000:]
    pixels = load_mnist(data_dir, train=False)[0][:4].float() / 255
    pixels[1] = float("nan")  # the case: all NaN
    pixels[2, 5, 5] = float("inf")  # a variant: one infinite pixel
    np.save(tmp_path / "pixels.npy", pixels.numpy())
    # in a subprocess: a graph that aborts on an empty batch takes its process down (exit 134)
    done = subprocess.run(
        [sys.executable, "-c", ORT_CHECK, str(onnx_path), str(tmp_path / "pixels.npy")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    got = json.loads(done.stdout)
    siamese = SiameseModel.from_checkpoint(world["siamese"], "cpu")
    model, mean, std = siamese.module, siamese.normalization.mean, siamese.normalization.std
    with torch.no_grad():
        expected, scores = (t.numpy() for t in PixelEncoder(model, mean, std)(pixels))  # + reject_score
        plain = model((pixels - mean) / std).numpy()  # the encoder's own forward: NaN for the NaN digit
    batch = np.array(got["batch"], dtype=np.float32)
    assert got["empty"] == [0, expected.shape[1]]
    assert np.isnan(plain[1]).all()
    assert np.array_equal(np.isnan(batch).all(1), [False, True, True, False])
    assert np.array_equal(np.isnan(expected).all(1), [False, True, True, False])
    assert np.array_equal(np.isnan(scores), [False, True, True, False])  # no score for no embedding
    finite = [0, 3]
    assert np.abs(batch[finite] - expected[finite]).max() <= 1e-4
    assert np.abs(expected[finite] - plain[finite]).max() <= 1e-5


# class 9: the page, served by `python -m siamese_lit.demo`, with real HTTP requests
@pytest.fixture(scope="module")
def page(world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """(base URL, server pid) of the demo served on a free port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("page") / "page.log"
    args = [f"ckpt_path={world['siamese']}", "gallery_size=200", "device=cpu", f"port={port}"]
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "siamese_lit.demo", *args, f"hydra.run.dir={log.parent / 'run'}"],
            cwd=PROJECT_ROOT,
            env=cli_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 300
        while "serving on" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1])


def _upload(client: httpx.Client, url: str, path: Path, **headers: str) -> httpx.Response:
    with path.open("rb") as f:
        return client.post(f"{url}/gradio_api/upload", files={"files": (path.name, f)}, headers=headers)


def _answer(
    client: httpx.Client, url: str, data: list, session: str, **headers: str
) -> httpx.Response | dict:
    """Join the Compare function's queue with `data`; its completion message when joined."""
    body = {"data": data, "fn_index": 0, "session_hash": session, "event_data": None, "trigger_id": None}
    joined = client.post(f"{url}/gradio_api/queue/join", json=body, headers=headers)
    if joined.status_code != 200:
        return joined
    with client.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as events:
        for line in events.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:]).get("msg") == "process_completed":
                return json.loads(line[6:])
    raise AssertionError("the queue closed without an answer")


def _file(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": Path(path).name}


def test_page_refuses_other_hosts_and_origins_and_large_uploads(
    page: tuple[str, int], world: dict[str, Path]
) -> None:
    url, _ = page
    port = url.rsplit(":", 1)[1]
    with httpx.Client(timeout=120) as client:
        assert client.get(url).status_code == 200
        # DNS rebinding: a name of the attacker's that resolves here
        assert client.get(url, headers={"Host": "evil.example"}).status_code == 421
        assert client.get(url, headers={"Host": f"evil.example:{port}"}).status_code == 421
        refused = _answer(client, url, [None] * 4, "rebind", Host=f"evil.example:{port}")
        assert isinstance(refused, httpx.Response) and refused.status_code == 421
        # a variant: this machine, another port (another service's page rebinding to this one)
        assert client.get(url, headers={"Host": "127.0.0.1:1"}).status_code == 421
        # a cross-site post, and a variant: a sandboxed page's `null` origin
        for origin in ("http://evil.example", "null"):
            assert _upload(client, url, world["digit_a"], Origin=origin).status_code == 403
        assert _upload(client, url, world["digit_a"], Origin=url).status_code == 200
        # the function runs for a request by the page's own address
        answered = _answer(client, url, [None] * 4, "ours")
        assert answered["success"] and "No verdict" in answered["output"]["data"][0]
        # uploads: a few MB at most, refused while they arrive
        big = world["out"] / "big.bin"
        big.write_bytes(os.urandom(6 * 2**20))
        assert _upload(client, url, big).status_code == 413


def test_page_reads_a_hostile_upload_or_drawing_in_bounded_memory(
    page: tuple[str, int], world: dict[str, Path]
) -> None:
    url, pid = page
    with httpx.Client(timeout=300) as client:
        a, b = (_upload(client, url, world[n]).json()[0] for n in ("digit_a", "digit_b"))
        plain = _answer(client, url, [None, _file(a), None, _file(b)], "plain")
        assert plain["success"] and "Verdict:" in plain["output"]["data"][0]
        bare = _peak_rss_kb(pid)
        bomb = _upload(client, url, world["png16"]).json()[0]
        as_upload = _answer(client, url, [None, _file(bomb), None, _file(b)], "upload")
        as_drawing = _answer(
            client,
            url,
            [{"background": None, "layers": [], "composite": _file(bomb)}, None, None, _file(b)],
            "drawing",
        )
        assert not (as_upload["success"] and "Verdict:" in as_upload["output"]["data"][0])
        assert not as_drawing["success"]
        assert _peak_rss_kb(pid) <= bare + MEMORY_MARGIN_MIB * 1024
