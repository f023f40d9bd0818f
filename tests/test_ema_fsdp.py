"""trainer.ema under trainer.strategy "fsdp" (torchrun, 2 CPU ranks, gloo): the average is kept over each rank's
shards, saved whole (one file, any world size) or sharded (torch.distributed.checkpoint), swapped in for
validation and out again bit for bit."""
import pytest
import torch

from tests.helpers.exact_resume import assert_identical
from tests.helpers.fsdp_ema_roundtrip import SETTINGS, STEPS, RootScaled, probe
from tests.helpers.paths import REPO
from tests.helpers.torchrun import STANDALONE, run_torchrun

pytestmark = pytest.mark.slow
ROUNDTRIP = REPO / "tests" / "helpers" / "fsdp_ema_roundtrip.py"


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Each rank's evidence from one 2-rank launch."""
    out = tmp_path_factory.mktemp("fsdp_ema")
    launched = run_torchrun(*STANDALONE, ROUNDTRIP, out, timeout=180)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    return [torch.load(out / f"evidence_rank{r}.pt", weights_only=True) for r in (0, 1)]


def hand_average(steps):
    """The EMA (float64) of the full weights after each step, by SETTINGS."""
    average = None
    for k, weights in enumerate(steps, start=1):
        if k > SETTINGS["start"] and (k - SETTINGS["start"]) % SETTINGS["every"] == 0:
            average = {n: w.double() if average is None else
                       SETTINGS["decay"] * average[n] + (1 - SETTINGS["decay"]) * w.double()
                       for n, w in weights.items()}
    return average


def test_the_full_state_is_the_average_of_the_full_weights_and_rank0_alone_has_it(ranks):
    full = ranks[0]["full"]
    assert ranks[1]["full"] == {}  # a collective: the other ranks get nothing, as with the model's parts
    assert (full["n_averaged"], full["steps"]) == (STEPS - 1, STEPS)
    expected = hand_average(ranks[0]["steps"])
    assert sorted(ranks[0]["names"]) == sorted(name for name, _ in RootScaled().named_parameters())
    for i, name in enumerate(ranks[0]["names"]):  # each rank keeps a shard of every parameter
        assert full["weights"][name].device.type == "cpu"
        assert torch.allclose(full["weights"][name].double(), expected[name], rtol=0, atol=1e-6), name
        # each rank's shard is its slice of the average (5 rows: 3 and 2; 3 rows: 2 and 1)
        assert torch.equal(torch.cat([rank["avg"][i] for rank in ranks]), full["weights"][name]), name
    assert sorted(full["weights"]) == sorted(RootScaled().state_dict())  # keyed like the plain model
    # buffers are copied: rank 0's running statistics, as after its last step
    assert torch.equal(full["weights"]["norm.running_mean"], ranks[0]["steps"][-1]["norm.running_mean"])


@pytest.mark.parametrize("load", ["in_memory", "dcp", "from_full"])
def test_each_load_puts_back_every_ranks_shards_bitwise(ranks, load):
    for rank in ranks:
        shards, n_averaged, steps = rank[load]
        assert_identical(shards, rank["avg"], load)
        assert (n_averaged, steps) == (STEPS - 1, STEPS)


def test_validation_swaps_the_average_in_and_the_weights_back_bit_for_bit(ranks):
    plain = RootScaled().eval()
    plain.load_state_dict(ranks[0]["full"]["weights"])
    with torch.no_grad():
        on_average = plain(probe())
    for rank in ranks:
        assert_identical(rank["raw_after"], rank["raw_before"], "raw weights")
        assert torch.equal(rank["out_after"], rank["out_raw"])
        assert (rank["out_avg"] - rank["out_raw"]).abs().max() > 1e-3  # the average is elsewhere
    # inside the swap each rank runs the plain model on the saved average: its root parameter included, and
    # rank 0's buffers (each rank's own BatchNorm statistics drifted apart)
    assert not torch.equal(ranks[0]["steps"][-1]["norm.running_mean"], ranks[1]["steps"][-1]["norm.running_mean"])
    for rank in ranks:
        assert torch.allclose(rank["out_avg"], on_average, rtol=0, atol=1e-6)
