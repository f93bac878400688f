"""One rank of a 2-process torch.distributed run (gloo on 127.0.0.1).

Usage: python ddp_worker.py RANK WORLD_SIZE STORE_FILE OUTPUT_JSON

The ranks meet through a file store (no TCP store server whose teardown can
race with the other rank's) and gloo talks over the loopback interface.
Each rank uses `BalancedBatchSampler(..., num_shards=world_size,
shard_index=rank)` in a `DataLoader`, trains a tiny DDP model with a
batch-hard triplet loss for 2 epochs in each mode, all-gathers every batch
and writes what it played.
"""

from __future__ import annotations

import datetime
import json
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset

from balanced_sampler import BalancedBatchSampler

P, K = 3, 2
LABELS = np.repeat(np.arange(11), [12, 9, 8, 7, 6, 5, 4, 4, 3, 2, 1])


def batch_hard_triplet_loss(embeddings, labels, margin=0.5):
    distances = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    hardest_positive = (distances * same).max(dim=1).values
    hardest_negative = distances.masked_fill(same, float("inf")).min(dim=1).values
    return torch.relu(hardest_positive - hardest_negative + margin).mean()


def main():
    rank, world_size, store, output = (
        int(sys.argv[1]),
        int(sys.argv[2]),
        sys.argv[3],
        sys.argv[4],
    )
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )
    torch.manual_seed(0)
    features = torch.randn(len(LABELS), 8)
    dataset = TensorDataset(torch.arange(len(LABELS)), features, torch.as_tensor(LABELS))
    model = DistributedDataParallel(torch.nn.Linear(8, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    out = {"labels": LABELS.tolist(), "losses": []}
    for mode, fixed in (("exhaustive", False), ("fixed", True)):
        sampler = BalancedBatchSampler(
            LABELS, P, K, safe_triplet=fixed, seed=5, num_shards=world_size, shard_index=rank
        )
        # The same global plan, unsharded (fixed mode: the same epoch length, which the
        # sharded sampler rounds to a multiple of P * K * world_size).
        spe = sampler.global_batches * sampler.batch_size if fixed else None
        whole = BalancedBatchSampler(
            LABELS, P, K, safe_triplet=fixed, samples_per_epoch=spe, seed=5
        )
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=0)
        record = {
            "global_batches": sampler.global_batches,
            "global_plans": [[b.tolist() for b in whole.plan(e)] for e in range(2)],
            "epochs": [],
            "gathered": [],
        }
        for epoch in range(2):
            sampler.set_epoch(epoch)
            played, gathered = [], []
            for index, x, y in loader:
                loss = batch_hard_triplet_loss(model(x), y)
                optimizer.zero_grad()
                loss.backward()  # DDP all-reduces the gradients: a collective per step
                optimizer.step()
                every = [None] * world_size
                dist.all_gather_object(every, index.tolist())
                played.append(index.tolist())
                gathered.append(every)
                total = loss.detach().clone()
                dist.all_reduce(total)
                out["losses"].append(round(float(total), 5))
            record["epochs"].append(played)
            record["gathered"].append(gathered)
        out[mode] = record
    # Same weights on every rank after training.
    weights = [p.detach().clone() for p in model.parameters()]
    for w in weights:
        reference = w.clone()
        dist.broadcast(reference, src=0)
        assert torch.equal(w, reference)
    dist.barrier()  # no rank tears gloo down while the other still talks to it
    dist.destroy_process_group()
    with open(output, "w") as f:
        json.dump(out, f)
    # torch 2.13's gloo teardown now and then aborts at interpreter exit ("terminate called
    # without an active exception") after all the work is done: leave without running C++
    # static destructors. Any failure above still exits non-zero with its traceback.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
