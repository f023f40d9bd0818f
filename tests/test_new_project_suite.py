"""A new project's own test suite (tests/project/ here, the copy's tests/): copied instead of the template's
self-tests, green as made, following the user's own model and data loader, and naming a broken model."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.cli import run_script
from tests.helpers.paths import REPO

SUITE = REPO / "tests" / "project"
GUIDE = "### Your own dataset, fast"

TINY_NET = '''

class TinyNet(BaseModel):
    """One linear layer on the flattened image: a user's own model."""

    def __init__(self, num_classes=10, inputs=784):
        super().__init__()
        self.fc = nn.Linear(inputs, num_classes)

    def forward(self, x):
        return F.log_softmax(self.fc(x.flatten(1)), dim=1)
'''


def new_project(tmp_path):
    project = tmp_path / "MyProject"
    result = run_script("new_project.py", project)
    assert result.returncode == 0, result.stderr
    return project


def run_suite(folder, *args, timeout=400):
    """The copy's own `python -m pytest` started in folder, with nothing of this checkout on its path;
    (exit code, output, seconds)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=folder,
                            env=env, capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout + result.stderr, time.monotonic() - start


def edit_config(project, **sections):
    config = json.loads((project / "config.json").read_text())
    config.update(sections)
    (project / "config.json").write_text(json.dumps(config, indent=2))


def test_a_copy_gets_the_project_suite_instead_of_the_templates_tests(tmp_path):
    project = new_project(tmp_path)
    suite = {p.relative_to(SUITE) for p in SUITE.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    copied = {p.relative_to(project / "tests") for p in (project / "tests").rglob("*") if p.is_file()}
    assert copied == suite | {Path("synthetic_mnist.py")}
    for name in suite:
        assert (project / "tests" / name).read_bytes() == (SUITE / name).read_bytes(), name
    readme = (project / "README.md").read_text()
    assert "## Tests" in readme and all(f"`{name}`" in readme for name in ("test_config_fits.py", "test_one_batch.py",
                                                                          "test_training.py", "tests/parts.py"))


def test_shrink_makes_the_projects_config_small_and_keeps_its_own_data_dir(tmp_path):
    from tests.project.conftest import BATCHES_PER_EPOCH, EPOCHS, MAX_BATCH_SIZE, shrink

    config = json.loads((REPO / "config.json").read_text())
    small = shrink(config, tmp_path / "saved", tmp_path / "mnist")
    assert small["n_gpu"] == 0 and config["n_gpu"] == 1  # the project's config is left as it was
    assert {k: small["trainer"][k] for k in ("epochs", "len_epoch", "save_dir", "tensorboard", "trackers")} == {
        "epochs": EPOCHS, "len_epoch": BATCHES_PER_EPOCH, "save_dir": str(tmp_path / "saved"), "tensorboard": False,
        "trackers": []}
    assert small["data_loader"]["args"] == {**config["data_loader"]["args"], "batch_size": MAX_BATCH_SIZE,
                                            "num_workers": 0, "data_dir": str(tmp_path / "mnist"), "download": False}

    own = {**config, "data_loader": {"type": "CsvDataLoader", "args": {"data_dir": "data/my_images/", "batch_size": 4}}}
    assert shrink(own, tmp_path / "saved", tmp_path / "mnist")["data_loader"]["args"] == {
        "data_dir": "data/my_images/", "batch_size": 4}  # the user's data as configured; no num_workers to take


@pytest.mark.slow
def test_the_copys_suite_passes_as_made_in_under_three_minutes(tmp_path):
    project = new_project(tmp_path)
    code, output, seconds = run_suite(project, "-m", "not slow", "--strict-markers")
    assert code == 0, output
    assert re.search(r"\b7 passed\b", output), output
    assert seconds < 180, f"the copy's suite took {seconds:.0f} s"


@pytest.mark.slow
def test_the_copys_suite_follows_a_new_model_and_names_a_broken_one(tmp_path):
    project = new_project(tmp_path)
    with (project / "model" / "model.py").open("a") as model_file:
        model_file.write(TINY_NET)
    edit_config(project, arch={"type": "TinyNet", "args": {}})
    code, output, _ = run_suite(project)
    assert code == 0 and re.search(r"\b7 passed\b", output), output

    edit_config(project, arch={"type": "TinyNet", "args": {"inputs": 100}})  # the model no longer fits the images
    code, output, _ = run_suite(project)
    assert code == 1 and re.search(r"\b5 failed, 2 passed\b", output), output  # the optimizer and data still fit
    # the dry check and the one-batch test name the part; train.py's runs (three tests) print its own error line
    assert output.count("arch TinyNet: forward on a batch of shape (8, 1, 28, 28) failed: RuntimeError: mat1 and "
                        "mat2 shapes cannot be multiplied") >= 2, output
    assert output.count("error: model TinyNet cannot take a batch of shape (8, 1, 28, 28)") >= 3, output


def guide_blocks(language):
    """The code blocks of docs/customizing.md's own-dataset guide, as written."""
    section = (REPO / "docs" / "customizing.md").read_text().split(GUIDE, 1)[1]
    section = re.split(r"\n#+ ", section, maxsplit=1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def write_csv_images(folder, counts=(("train", 24), ("test", 6)), n_classes=5):
    """Small random RGB PNGs listed in train.csv and test.csv (paths relative to the csv), as the guide reads them."""
    rng = np.random.default_rng(1)
    for split, count in counts:
        (folder / split).mkdir(parents=True)
        rows = ["path,label"]
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / split / f"{i}.png")
            rows.append(f"{split}/{i}.png,{i % n_classes}")
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.slow
def test_the_copys_suite_passes_after_the_own_dataset_guide(tmp_path):
    project = new_project(tmp_path)
    (python_block,), (json_block,) = guide_blocks("python"), guide_blocks("json")
    with (project / "data_loader" / "data_loaders.py").open("a") as loaders:
        loaders.write("\n\n" + python_block)  # pasted at the end, as the guide says
    edit_config(project, **json.loads(json_block))
    data_dir = json.loads(json_block)["data_loader"]["args"]["data_dir"]
    write_csv_images(project / data_dir)  # the data where the user's config says it is

    code, output, _ = run_suite(project / "tests")  # started there, data_dir is still the project's data/my_images
    assert code == 0 and re.search(r"\b7 passed\b", output), output
