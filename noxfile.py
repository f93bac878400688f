"""Sessions: `nox` runs lint, the core tests without TensorFlow, the full suite and the
PyTorch tests (without TensorFlow)."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests_core", "tests", "tests_torch"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = None  # the interpreter nox runs on (>= 3.10)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Runs every test, TensorFlow ones included."""
    # tensorboard: the test that RetrievalEvaluation's metrics reach TensorBoard.
    session.install(".[test,tensorflow]", "tensorboard")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def tests_core(session: nox.Session) -> None:
    """Installs kerasgen WITHOUT TensorFlow and runs the core tests."""
    session.install(".[test]")
    session.run(
        "python",
        "-c",
        "import importlib.util as u, sys; "
        "sys.exit('tensorflow must not be installed here' if u.find_spec('tensorflow') else 0)",
    )
    session.run("pytest", "tests/core", *session.posargs)


@nox.session(python=PYTHON)
def tests_torch(session: nox.Session) -> None:
    """Runs the PyTorch tests (CPU torch, torchdata, pytorch-metric-learning), no TensorFlow."""
    session.install(".[test]")
    # torch 2.13.0 is the CPU build kept on this project's machines; another version would
    # download a multi-GB CUDA build.
    session.install("torch==2.13.0", "torchdata==0.11.0", "pytorch-metric-learning")
    session.run("pytest", "tests/torch", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Runs ruff on everything and mypy (strict on balanced_sampler)."""
    session.install(".[lint,test]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "balanced_sampler")
    session.run("mypy")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job: trains a triplet embedding on balanced batches (one to two minutes)."""
    session.install(".[tensorflow,plot]", "scikit-learn")
    session.run("python", "examples/demo.py", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Runs the benchmarks and prints their tables (slow: minutes)."""
    session.install(".[tensorflow]", "pillow", "scikit-learn")
    for script in (
        "bench_sampler.py",
        "bench_indexing.py",
        "bench_pipeline.py",
        "bench_data_service.py",
        "bench_cache.py",
    ):
        session.run("python", f"benchmarks/{script}", *session.posargs)


@nox.session(python=PYTHON)
def bench_training(session: nox.Session) -> None:
    """Trains the same network on Keras', our and MPerClassSampler's batches (~15 min)."""
    session.install(".[tensorflow]", "pillow", "scikit-learn")
    session.install("torch==2.13.0", "pytorch-metric-learning")  # the MPerClassSampler arm
    session.run("python", "benchmarks/bench_training.py", *session.posargs)


@nox.session(python=PYTHON)
def bench_retrieval(session: nox.Session) -> None:
    """Retrieval metrics: ours against pytorch-metric-learning's AccuracyCalculator."""
    session.install(".", "torch==2.13.0", "pytorch-metric-learning", "faiss-cpu")
    session.run("python", "benchmarks/bench_retrieval.py", *session.posargs)


@nox.session(python=PYTHON)
def bench_neighbors(session: nox.Session) -> None:
    """Hard-class batches: planning against plain fixed plans, and class-neighbour tables."""
    session.install(".")
    session.run("python", "benchmarks/bench_sampler.py", "--neighbors", *session.posargs)
    session.run("python", "benchmarks/bench_neighbors.py", *session.posargs)
