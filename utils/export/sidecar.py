"""The JSON beside an exported model (model_best.pt2 -> model_best.pt2.json): where it came from, what it takes,
what it was checked against, and the run's config, with which test.py finds the test split."""
import hashlib
import json
from pathlib import Path

from utils.errors import UserError


def sidecar_path(artifact):
    return Path(artifact).with_name(Path(artifact).name + ".json")


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sidecar(artifact):
    """The JSON beside `artifact`; a missing artifact or JSON, or one that is not export.py's, is a UserError."""
    artifact, path = Path(artifact), sidecar_path(artifact)
    again = "export the checkpoint again: python export.py -r CHECKPOINT"
    if not artifact.is_file():
        raise UserError(f"exported model {artifact} does not exist; pass a file that export.py wrote, or {again}")
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"exported model {artifact} has no {path.name} beside it (export.py writes both, and "
                        f"test.py reads the run's config from it); copy it along, or {again}") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{path} cannot be read ({type(err).__name__}); {again}") from None
    if not isinstance(content, dict) or not isinstance(content.get("config"), dict):
        raise UserError(f"{path} is not the JSON export.py writes (no run config in it); {again}")
    return content
