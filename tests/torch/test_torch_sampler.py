"""`BalancedBatchSampler` in PyTorch: DataLoader workers, torch.distributed, resume."""

from __future__ import annotations

import json
import pathlib
import pickle
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from balanced_sampler import BalancedBatchSampler

SCRIPTS = pathlib.Path(__file__).parent / "scripts"
P, K = 3, 2
# 11 classes, long-tailed, one class of a single image: 61 samples.
LABELS = np.repeat(np.arange(11), [12, 9, 8, 7, 6, 5, 4, 4, 3, 2, 1])


class IndexedSamples(Dataset):
    """Sample i is (i, label_i): the batches show which samples were drawn."""

    def __init__(self, labels):
        self.labels = np.asarray(labels)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return torch.tensor(i), torch.tensor(int(self.labels[i]))


def batches_of(loader):
    return [index.tolist() for index, _ in loader]


def test_core_does_not_import_torch():
    code = (
        "import sys; import balanced_sampler, balanced_sampler.sampler; "
        "sys.exit('torch was imported' if 'torch' in sys.modules else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("fixed", [False, True], ids=["exhaustive", "fixed"])
def test_dataloader_with_two_workers_plays_the_plans(fixed):
    sampler = BalancedBatchSampler(LABELS, P, K, safe_triplet=fixed, seed=7)
    loader = DataLoader(IndexedSamples(LABELS), batch_sampler=sampler, num_workers=2)
    assert len(loader) == len(sampler)
    for epoch in range(2):
        got = []
        for index, labels in loader:
            assert labels.tolist() == LABELS[index.numpy()].tolist()
            got.append(index.tolist())
        assert got == [b.tolist() for b in sampler.plan(epoch)]
        if fixed:
            for batch in got:
                counts = Counter(LABELS[batch].tolist())
                assert len(counts) == P
                assert set(counts.values()) == {K}
        else:
            assert sorted(i for b in got for i in b) == list(range(len(LABELS)))


def test_set_epoch_as_with_distributed_sampler():
    sampler = BalancedBatchSampler(LABELS, P, K, seed=7)
    loader = DataLoader(IndexedSamples(LABELS), batch_sampler=sampler)
    sampler.set_epoch(5)
    assert batches_of(loader) == [b.tolist() for b in sampler.plan(5)]
    assert batches_of(loader) == [b.tolist() for b in sampler.plan(6)]


# -------------------------------------------------------------------- resume


def test_state_dict_protocol_mid_epoch():
    # The protocol StatefulDataLoader relies on: state_dict() after the batches
    # handed out so far, load_state_dict() into a new sampler, iter() continues.
    original = BalancedBatchSampler(LABELS, P, K, safe_triplet=True, seed=3)
    original.set_epoch(1)
    iterator = iter(original)
    head = [next(iterator) for _ in range(4)]
    state = original.state_dict()
    assert {key: state[key] for key in ("seed", "epoch", "next_batch")} == {
        "seed": 3,
        "epoch": 1,
        "next_batch": 4,
    }
    assert json.loads(json.dumps(state)) == state  # plain data: any checkpoint format
    tail = list(iterator)

    restored = BalancedBatchSampler(LABELS, P, K, safe_triplet=True, seed=None)
    restored.load_state_dict(state)
    assert list(restored) == tail
    assert head + tail == [b.tolist() for b in original.plan(1)]
    assert list(restored) == [b.tolist() for b in original.plan(2)]


@pytest.mark.filterwarnings("ignore:.set_vital. is deprecated")
@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("fixed", [False, True], ids=["exhaustive", "fixed"])
def test_stateful_dataloader_resumes_mid_epoch(num_workers, fixed):
    stateful = pytest.importorskip("torchdata.stateful_dataloader")

    def loader_of(sampler):
        return stateful.StatefulDataLoader(
            IndexedSamples(LABELS), batch_sampler=sampler, num_workers=num_workers
        )

    sampler = BalancedBatchSampler(LABELS, P, K, safe_triplet=fixed, seed=11)
    assert isinstance(sampler, stateful.Stateful)
    loader = loader_of(sampler)
    batches_of(loader)  # epoch 0
    iterator = iter(loader)  # epoch 1
    head = [next(iterator)[0].tolist() for _ in range(3)]
    state = loader.state_dict()
    tail = [index.tolist() for index, _ in iterator]
    following = batches_of(loader)
    assert head + tail == [b.tolist() for b in sampler.plan(1)]

    new_loader = loader_of(BalancedBatchSampler(LABELS, P, K, safe_triplet=fixed, seed=None))
    new_loader.load_state_dict(state)
    assert batches_of(new_loader) == tail
    assert batches_of(new_loader) == following


def test_a_pickled_sampler_feeds_a_dataloader_alike():
    # mp.spawn, Ray and Lightning-style wrappers pickle the batch sampler.
    sampler = BalancedBatchSampler(LABELS, P, K, safe_triplet=True, seed=5)
    clone = pickle.loads(pickle.dumps(sampler))
    loader = DataLoader(IndexedSamples(LABELS), batch_sampler=clone)
    assert batches_of(loader) == [b.tolist() for b in sampler.plan(0)]


# --------------------------------------------------------- torch.distributed


@pytest.mark.slow
def test_two_processes_under_torch_distributed(tmp_path):
    store = tmp_path / "store"
    procs = []
    try:
        for rank in range(2):
            args = [str(rank), "2", str(store), str(tmp_path / f"rank{rank}.json")]
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(SCRIPTS / "ddp_worker.py"), *args],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    outs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    labels = np.asarray(outs[0]["labels"])
    for mode in ("exhaustive", "fixed"):
        global_batches = outs[0][mode]["global_batches"]
        for epoch in range(2):
            mine = [o[mode]["epochs"][epoch] for o in outs]
            # Equal step counts (the collectives of every step would hang otherwise).
            assert len(mine[0]) == len(mine[1]) == global_batches // 2
            # Each rank saw the other's batches through all_gather: the same ones.
            assert outs[0][mode]["gathered"][epoch] == outs[1][mode]["gathered"][epoch]
            # Rank r plays global batches r, r + 2, ...: disjoint positions of one plan.
            plan = outs[0][mode]["global_plans"][epoch]
            assert outs[1][mode]["global_plans"][epoch] == plan
            for rank in range(2):
                assert mine[rank] == plan[rank::2][: global_batches // 2]
            seen = [i for batches in mine for batch in batches for i in batch]
            if mode == "exhaustive":
                assert len(seen) == len(set(seen))  # no sample on both ranks
            else:
                for batch in mine[0] + mine[1]:
                    counts = Counter(labels[batch].tolist())
                    assert len(counts) == P
                    assert set(counts.values()) == {K}
    assert outs[0]["losses"] == outs[1]["losses"]  # DDP: one synchronised model


@pytest.mark.slow
def test_pytorch_metric_learning_example_runs():
    pytest.importorskip("pytorch_metric_learning")
    example = pathlib.Path(__file__).parents[2] / "examples" / "torch_triplet.py"
    result = subprocess.run(
        [sys.executable, str(example), "--epochs", "2", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "plays the remaining" in result.stdout
