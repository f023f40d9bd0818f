"""Offline data as the README says it: a folder holding the four MNIST files, linked to data/MNIST directly or
holding raw/, trains; a download never writes into a linked folder, whether it would fail or succeed."""
import gzip
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest
import torch
from torchvision import datasets

from data_loader.data_loaders import MnistDataLoader
from data_loader.mnist import MNIST_FILES
from tests.helpers.cli import train_in_process
from tests.helpers.configs import shrink_config, write_config
from tests.helpers.paths import REAL_MNIST
from tests.helpers.runs import run_dirs
from tests.helpers.skips import needs_real_mnist
from utils.errors import UserError


def _listing(folder):
    """Every entry under `folder` (links not followed) with its bytes' hash: 'byte for byte unchanged'."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
            for p in sorted(Path(folder).rglob("*"))}


def _files_folder(synthetic_data_dir, folder, layout, drop=()):
    """A user's shared folder: the four files directly ("flat") or under raw/ ("raw"), less `drop`."""
    files = folder / "raw" if layout == "raw" else folder
    files.mkdir(parents=True)
    for name in MNIST_FILES:
        if name not in drop:
            shutil.copy(synthetic_data_dir / "MNIST" / "raw" / name, files / name)
    return folder


def _linked_data_dir(tmp_path, target):
    """A data_dir whose MNIST is a link to `target`, as the README says to make it."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "MNIST").symlink_to(target, target_is_directory=True)
    return data_dir


class _Mirror:
    """A local MNIST mirror (gzipped synthetic files) that torchvision downloads from; counts the requests."""

    def __init__(self, synthetic_data_dir, root):
        self.requests = []
        served = root / "mirror"
        served.mkdir()
        self.resources = []
        for name in MNIST_FILES:
            packed = gzip.compress((synthetic_data_dir / "MNIST" / "raw" / name).read_bytes())
            (served / f"{name}.gz").write_bytes(packed)
            self.resources.append((f"{name}.gz", hashlib.md5(packed).hexdigest()))
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(served), **kwargs)

            def do_GET(self):
                mirror.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def mirror(synthetic_data_dir, tmp_path, monkeypatch):
    """torchvision's public mirror list and checksums pointed at a local mirror: a download that succeeds."""
    served = _Mirror(synthetic_data_dir, tmp_path)
    monkeypatch.setattr(datasets.MNIST, "mirrors", [served.url])
    monkeypatch.setattr(datasets.MNIST, "resources", served.resources)
    for proxy in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    yield served
    served.server.shutdown()
    served.server.server_close()


@pytest.mark.parametrize("layout", ["flat", "raw"])
def test_a_linked_folder_of_the_four_files_trains_and_stays_unchanged(layout, tmp_path, synthetic_data_dir, one_thread):
    shared = _files_folder(synthetic_data_dir, tmp_path / "shared", layout)
    before = _listing(shared)
    data_dir = _linked_data_dir(tmp_path, shared)
    config = shrink_config(tmp_path, data_dir, epochs=1)
    config["data_loader"]["args"]["download"] = True  # the default: files found, so no download is tried

    train_in_process("-c", write_config(tmp_path, config))

    [run] = run_dirs(tmp_path / "saved")
    assert (run / "checkpoint-epoch1.pth").is_file()
    assert _listing(shared) == before


def test_the_per_sample_path_reads_the_flat_layout_as_the_in_memory_one(tmp_path, synthetic_data_dir):
    data_dir = _linked_data_dir(tmp_path, _files_folder(synthetic_data_dir, tmp_path / "shared", "flat"))
    in_memory = MnistDataLoader(data_dir, batch_size=8, shuffle=False, training=False, download=False)
    per_sample = MnistDataLoader(data_dir, batch_size=8, shuffle=False, training=False, download=False,
                                 in_memory=False, num_workers=0)
    (images, labels), (images_ps, labels_ps) = next(iter(in_memory)), next(iter(per_sample))
    assert len(per_sample.dataset) == len(in_memory.dataset) == 200
    assert torch.equal(labels, labels_ps)
    assert torch.allclose(images, images_ps)


@pytest.mark.parametrize("layout", ["flat", "raw"])
def test_a_download_never_writes_into_a_linked_folder(layout, tmp_path, synthetic_data_dir, mirror):
    shared = _files_folder(synthetic_data_dir, tmp_path / "shared", layout, drop=("t10k-labels-idx1-ubyte",))
    before = _listing(shared)
    data_dir = _linked_data_dir(tmp_path, shared)

    with pytest.raises(UserError) as refused:
        MnistDataLoader(data_dir, batch_size=8, download=True)

    assert _listing(shared) == before
    assert mirror.requests == [], "a download was tried into the linked folder"
    line = str(refused.value)
    where = data_dir / "MNIST" / ("raw" if layout == "raw" else "")
    assert line.startswith(f"MNIST files missing in {where}: t10k-labels-idx1-ubyte;"), line
    assert "is a link, never downloaded into" in line and "\n" not in line



def test_a_link_to_no_folder_says_where_it_points(tmp_path, mirror):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "MNIST").symlink_to("../shared/mnist")  # relative to data/, not to the working folder: a slip

    with pytest.raises(UserError) as refused:
        MnistDataLoader(data_dir, batch_size=8, download=True)

    assert str(refused.value) == (f"{data_dir / 'MNIST'} links to ../shared/mnist, which is no folder (a relative "
                                  f"target is read from {data_dir}); link a folder holding the four MNIST files there")
    assert mirror.requests == [] and not (tmp_path / "shared").exists()

def test_a_download_into_a_folder_of_its_own_succeeds(tmp_path, mirror):
    """The control for the test above: the local mirror serves a working download where no link is in the way."""
    loader = MnistDataLoader(tmp_path / "data", batch_size=8, download=True)
    assert len(loader.dataset) == 600
    assert {path.strip("/") for path in mirror.requests} == {f"{name}.gz" for name in MNIST_FILES}
    assert sorted(p.name for p in (tmp_path / "data" / "MNIST" / "raw").iterdir() if ".gz" not in p.name) == \
        sorted(MNIST_FILES)


def test_a_failed_download_is_one_short_line_and_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # a closed port: refused at once
    for proxy in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.chdir(tmp_path)  # a short relative path, as the README's data/ is

    with pytest.raises(UserError) as refused:
        MnistDataLoader("data/", batch_size=8, download=True)

    line = str(refused.value)
    assert line.startswith("MNIST files missing in data/MNIST/raw: all four; download failed: "), line
    assert line.endswith("Put them there or link a folder holding them to data/MNIST")
    assert len(line) <= 160, f"{len(line)} characters: {line}"
    assert not (tmp_path / "data").exists()


@pytest.mark.real_data
@needs_real_mnist
def test_the_real_files_linked_directly_train_and_stay_unchanged(tmp_path, one_thread):
    """The README's words on the real data: link the folder that holds the four files itself to data/MNIST."""
    before = _listing(REAL_MNIST)
    data_dir = _linked_data_dir(tmp_path, REAL_MNIST.resolve())
    config = shrink_config(tmp_path, data_dir, epochs=1, len_epoch=20)
    config["data_loader"]["args"].update(download=True, validation_split=1000)

    train_in_process("-c", write_config(tmp_path, config))

    [run] = run_dirs(tmp_path / "saved")
    assert (run / "checkpoint-epoch1.pth").is_file()
    assert _listing(REAL_MNIST) == before
