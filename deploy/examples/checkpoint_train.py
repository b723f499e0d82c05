#!/usr/bin/env python3
"""A small training job that checkpoints and resumes the way sched expects (docs/checkpoints.md).

It fits a logistic regression (32 features and a bias) by mini-batch SGD on a synthetic data set
drawn from random.Random(seed). The run is deterministic: an interrupted run resumed from any of
its checkpoints prints the same final "result:" line as an uninterrupted one.

The contract it follows:
- SCHED_CHECKPOINT_DIR (set by the agent for every attempt, empty at first): every
  --checkpoint-every steps the state goes into "$SCHED_CHECKPOINT_DIR/.tmp-step-NNNNNN", is
  fsynced, then renamed to "step-NNNNNN". The agent ignores names starting with '.', so it only
  ever sees whole checkpoints; names grow with the step, so each is new. Only the newest --keep
  stay on disk here: schedd keeps its own copies.
- SCHED_RESUME_FROM (set on a later attempt when schedd has a checkpoint of the job): the path of
  the newest checkpoint, downloaded and verified. The state is loaded from it.
On SIGTERM (the agent passes on a preemption notice that way) it finishes the step under way,
publishes it as a checkpoint and exits 143: the next attempt resumes from that very step.
Without either variable the job simply runs from the start and writes nothing.
"""
import argparse
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import sys
import time

FEATURES = 32
SAMPLES = 400
BATCH = 16
LEARNING_RATE = 0.1
CHECKPOINT_NAME = re.compile(r"step-\d{6}")


def make_dataset(seed):
    """(x, y) pairs: x with a constant 1.0 last for the bias, y in {0, 1}."""
    rng = random.Random(seed)
    true_w = [rng.gauss(0, 1) for _ in range(FEATURES + 1)]
    data = []
    for _ in range(SAMPLES):
        x = [rng.gauss(0, 1) for _ in range(FEATURES)] + [1.0]
        y = 1.0 if rng.random() < sigmoid(dot(true_w, x)) else 0.0
        data.append((x, y))
    return data


def dot(a, b):
    return sum(p * q for p, q in zip(a, b))


def sigmoid(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def log_loss(w, samples):
    """Mean binary cross-entropy, computed without overflow."""
    total = 0.0
    for x, y in samples:
        z = dot(w, x)
        total += max(z, 0.0) - y * z + math.log1p(math.exp(-abs(z)))
    return total / len(samples)


def sgd_step(w, batch):
    grad = [0.0] * len(w)
    for x, y in batch:
        err = sigmoid(dot(w, x)) - y
        for i, xi in enumerate(x):
            grad[i] += err * xi
    return [wi - LEARNING_RATE * gi / len(batch) for wi, gi in zip(w, grad)]


def load_state(path):
    """State from a checkpoint folder (its state.json) or a single checkpoint file."""
    if os.path.isdir(path):
        path = os.path.join(path, "state.json")
    with open(path) as f:
        state = json.load(f)
    version, internal, gauss_next = state["rng_state"]
    state["rng_state"] = (version, tuple(internal), gauss_next)
    return state


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_checkpoint(ckpt_dir, state, keep):
    """Writes state under a temporary name, renames it into place, drops all but the newest keep."""
    name = "step-%06d" % state["step"]
    tmp = os.path.join(ckpt_dir, ".tmp-" + name)
    shutil.rmtree(tmp, ignore_errors=True)
    os.mkdir(tmp)
    with open(os.path.join(tmp, "state.json"), "w") as f:
        json.dump(state, f)  # floats are written with repr(): they read back bit for bit
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(tmp)
    os.rename(tmp, os.path.join(ckpt_dir, name))
    fsync_dir(ckpt_dir)
    published = sorted(n for n in os.listdir(ckpt_dir) if CHECKPOINT_NAME.fullmatch(n))
    for old in published[:-keep]:
        shutil.rmtree(os.path.join(ckpt_dir, old), ignore_errors=True)
    return name


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--checkpoint-every", type=int, default=20)
    parser.add_argument("--step-seconds", type=float, default=0.0, help="sleep after each step")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=int, default=2, help="local checkpoints to keep")
    args = parser.parse_args()
    if args.checkpoint_every < 1 or args.keep < 1:
        parser.error("--checkpoint-every and --keep must be at least 1")

    data = make_dataset(args.seed)
    rng = random.Random(args.seed + 1)  # draws the mini-batches; its state is checkpointed
    step, weights, losses = 0, [0.0] * (FEATURES + 1), []
    resume_from = os.environ.get("SCHED_RESUME_FROM")
    if resume_from:
        state = load_state(resume_from)
        step, weights, losses = state["step"], state["weights"], state["losses"]
        rng.setstate(state["rng_state"])
        print("resumed from step %d" % step, flush=True)
    ckpt_dir = os.environ.get("SCHED_CHECKPOINT_DIR")
    # SIGTERM (a preemption notice, or a cancel): finish the step under way, save it, stop.
    stopping = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))

    while step < args.steps:
        batch = [data[rng.randrange(len(data))] for _ in range(BATCH)]
        weights = sgd_step(weights, batch)
        losses.append(log_loss(weights, batch))
        step += 1
        if args.step_seconds > 0:
            time.sleep(args.step_seconds)
        if ckpt_dir and (step % args.checkpoint_every == 0 or stopping):
            state = {"step": step, "weights": weights, "rng_state": rng.getstate(),
                     "losses": losses}
            name = publish_checkpoint(ckpt_dir, state, args.keep)
            print("checkpoint %s loss=%.6f" % (name, log_loss(weights, data)), flush=True)
        if stopping:
            print("stopped at step %d by SIGTERM" % step, flush=True)
            return 143

    digest = hashlib.sha256(repr(weights).encode()).hexdigest()
    print("result: steps=%d loss=%r weights_sha256=%s" % (step, log_loss(weights, data), digest),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
