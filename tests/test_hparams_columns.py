"""TensorBoard's HParams tab, as TensorBoard itself computes it from the event files: the settings
that differ between runs come first (the tab shows the first five), and a search's trials show the
searched keys alone."""
import json

from torch.utils.tensorboard import SummaryWriter

from logger.hparams import HParamsWriter
from tests.helpers.paths import REPO

LOG = {"epoch": 1, "loss": 0.5, "val_loss": 0.4, "lr": 0.1}
BEST = {"metric": "val_loss", "value": 0.4, "epoch": 1}


def tab_columns(logdir, shown=5):
    """[(setting, differs)] that TensorBoard's HParams tab shows by default for `logdir`."""
    from tensorboard import context
    from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.plugins.base_plugin import TBContext
    from tensorboard.plugins.hparams.backend_context import Context

    runs = EventMultiplexer()
    runs.AddRunsFromDirectory(str(logdir))
    runs.Reload()
    backend = Context(TBContext(logdir=str(logdir), multiplexer=runs,
                                data_provider=MultiplexerDataProvider(runs, str(logdir))))
    request = context.RequestContext()
    experiment = backend.experiment_from_metadata(request, "", False, backend.hparams_metadata(request, ""),
                                                  backend.hparams_from_data_provider(request, "", None), shown)
    return [(column.name, column.differs) for column in experiment.hparam_infos]


def write_runs(logdir, learning_rates, searched=None):
    for number, lr in enumerate(learning_rates):
        config = json.loads((REPO / "config.json").read_text())
        config["optimizer"]["args"]["lr"] = lr
        with SummaryWriter(str(logdir / f"run{number}")) as writer:
            HParamsWriter(config, searched).write(writer, 1, LOG, BEST)


def test_the_setting_that_differs_between_plain_runs_comes_first(tmp_path):
    write_runs(tmp_path, [0.1, 0.01])
    columns = tab_columns(tmp_path)
    assert columns[0] == ("optimizer.args.lr", True)
    assert all(not differs for _, differs in columns[1:])  # constants follow, alphabetically
    assert len(tab_columns(tmp_path, shown=0)) == 26  # every setting is kept, for any later comparison


def test_a_search_shows_its_searched_keys_and_no_constant(tmp_path):
    write_runs(tmp_path, [0.1, 0.01], searched=["optimizer.args.lr"])
    assert tab_columns(tmp_path, shown=0) == [("optimizer.args.lr", True)]


def test_the_hparams_metrics_leave_out_what_is_no_measure_of_the_model():
    from logger.hparams import summary_metrics

    assert summary_metrics(LOG, BEST) == {"hparams/final_loss": 0.5, "hparams/final_val_loss": 0.4,
                                          "hparams/final_epoch": 1.0, "hparams/best_val_loss": 0.4,
                                          "hparams/best_epoch": 1.0}
