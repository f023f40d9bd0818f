"""Read the trackers' own stores back: MLflow's SQLite store, W&B's offline run files."""
import struct
from pathlib import Path


def mlflow_client(save_dir):
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=f"sqlite:///{Path(save_dir).absolute() / 'mlflow.db'}")


def mlflow_runs(save_dir, experiment="Mnist_LeNet"):
    client = mlflow_client(save_dir)
    found = client.get_experiment_by_name(experiment)
    return client, (client.search_runs([found.experiment_id]) if found else [])


def steps(client, run_id, key):
    return [m.step for m in sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))]


def wandb_segments(log_dir):
    """[(run_id, history rows {key: value}, exit code)] per offline-run folder, oldest first.

    A .wandb file is a LevelDB-style log (a 7-byte ':W&B' header, 32 KiB blocks of records
    with a 7-byte header each) of wandb_internal_pb2.Record protobufs.
    """
    segments = []
    for path in sorted(Path(log_dir).glob("wandb/offline-run-*/run-*.wandb")):
        run_id, rows, exit_code = None, [], None
        for record in _records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run_id = record.run.run_id
            elif kind == "history":
                rows.append({item.key or "/".join(item.nested_key): item.value_json for item in record.history.item})
            elif kind == "exit":
                exit_code = record.exit.exit_code
        segments.append((run_id, rows, exit_code))
    return segments


def _records(path):
    from wandb.proto import wandb_internal_pb2
    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def newest_points(client, run_id, key):
    """{step: value} with the newest value at each step (MLflow keeps every value logged; the newest is the run's)."""
    history = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    return {m.step: m.value for m in history}
