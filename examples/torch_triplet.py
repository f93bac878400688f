"""PyTorch metric learning on balanced P x K batches (pytorch-metric-learning).

`BalancedBatchSampler` is a plain `batch_sampler`: no torch import in
kerasgen's core, nothing to wrap. This script trains a small embedding with
pytorch-metric-learning's `TripletMarginLoss` and a semi-hard miner on
synthetic, long-tailed clustered data (so it needs no download and runs in
seconds on a CPU), reports recall@1 before and after, and shows how to save
and restore the sampler's position in a checkpoint.

    pip install torch pytorch-metric-learning kerasgen
    python examples/torch_triplet.py [--epochs 5] [--workers 2]

For several processes (DDP), give each rank its shard of the same plan:
`BalancedBatchSampler(labels, P, K, seed=SEED, num_shards=world_size,
shard_index=rank)` and call `sampler.set_epoch(epoch)` every epoch, as with
`DistributedSampler`; every rank then gets the same number of batches.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from pytorch_metric_learning import losses, miners
from torch.utils.data import DataLoader, TensorDataset

from balanced_sampler import BalancedBatchSampler


def make_data(num_classes: int, dim: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Long-tailed Gaussian clusters seen through a random non-linear map."""
    rng = np.random.default_rng(seed)
    sizes = np.maximum(2, (60 / np.arange(1, num_classes + 1) ** 0.7).astype(int))
    labels = np.repeat(np.arange(num_classes), sizes)
    centres = rng.normal(size=(num_classes, 8))
    latent = centres[labels] + 0.6 * rng.normal(size=(len(labels), 8))
    mixing = rng.normal(size=(8, dim))
    features = np.tanh(latent @ mixing) + 0.3 * rng.normal(size=(len(labels), dim))
    return torch.tensor(features, dtype=torch.float32), labels


@torch.no_grad()
def recall_at_1(model: torch.nn.Module, features: torch.Tensor, labels: np.ndarray) -> float:
    """Fraction of samples whose nearest other sample has the same label."""
    model.eval()
    embeddings = torch.nn.functional.normalize(model(features), dim=1)
    distances = torch.cdist(embeddings, embeddings)
    distances.fill_diagonal_(float("inf"))
    nearest = distances.argmin(dim=1).numpy()
    return float(np.mean(labels[nearest] == labels))


def main() -> None:
    """Trains, evaluates and demonstrates a mid-epoch checkpoint of the sampler."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("-P", type=int, default=8, help="classes per batch")
    parser.add_argument("-K", type=int, default=4, help="images per class")
    args = parser.parse_args()

    torch.manual_seed(0)
    features, labels = make_data(num_classes=40, dim=32, seed=0)
    dataset = TensorDataset(features, torch.as_tensor(labels))
    sampler = BalancedBatchSampler(labels, args.P, args.K, safe_triplet=True, seed=1234)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=args.workers)
    print(f"{len(labels)} samples, {sampler.num_classes} classes, {sampler}")

    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = losses.TripletMarginLoss(margin=0.2)
    miner = miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")

    print(f"recall@1 before training: {recall_at_1(model, features, labels):.3f}")
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        model.train()
        total = 0.0
        for x, y in loader:
            embeddings = model(x)
            loss = loss_fn(embeddings, y, miner(embeddings, y))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        print(
            f"epoch {epoch}: {len(loader)} batches, mean loss {total / len(loader):.4f}, "
            f"recall@1 {recall_at_1(model, features, labels):.3f}"
        )

    # Resume mid-epoch: the sampler's state is three integers (seed, epoch, next batch) and a
    # fingerprint of the labels and settings; save it with the model.
    iterator = iter(sampler)
    done = [next(iterator) for _ in range(3)]
    checkpoint = {"model": model.state_dict(), "sampler": sampler.state_dict()}
    rest = list(iterator)
    restored = BalancedBatchSampler(labels, args.P, args.K, safe_triplet=True)
    restored.load_state_dict(checkpoint["sampler"])
    assert list(restored) == rest
    print(
        f"checkpoint {checkpoint['sampler']} after {len(done)} batches: the restored sampler "
        f"plays the remaining {len(rest)} batches exactly"
    )


if __name__ == "__main__":
    main()
