#!/usr/bin/env python3
"""A PyTorch training job that checkpoints and resumes the way sched expects (docs/checkpoints.md).

It trains a small MLP classifier on a synthetic data set (drawn from a seeded generator) on the
GPU it is given (CUDA_VISIBLE_DEVICES), or on the CPU without one. Deterministic settings are
on, so a run interrupted and resumed from a checkpoint follows the same loss curve, and ends with
the same weights, as one never interrupted.

- Every --checkpoint-every steps, when SCHED_CHECKPOINT_DIR is set, the model, the optimizer and
  every random generator's state go into "$SCHED_CHECKPOINT_DIR/.tmp-step-NNNNNN/state.pt", which
  is then renamed to "step-NNNNNN" (the agent uploads it).
- With SCHED_RESUME_FROM set it loads that checkpoint and goes on from its step.
- On SIGTERM (a preemption notice) it finishes the step under way, checkpoints it and exits 143.
Each step prints "step N loss X"; the end prints "result: ..." with a hash of the weights.
"""
import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS

import argparse
import hashlib
import shutil
import signal
import sys
import time

import torch

FEATURES, CLASSES, SAMPLES, BATCH = 256, 10, 20000, 512


def publish(ckpt_dir, state, step, keep):
    name = "step-%06d" % step
    tmp = os.path.join(ckpt_dir, ".tmp-" + name)
    shutil.rmtree(tmp, ignore_errors=True)
    os.mkdir(tmp)
    path = os.path.join(tmp, "state.pt")
    torch.save(state, path)
    with open(path, "rb") as f:
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(ckpt_dir, name))
    kept = sorted(n for n in os.listdir(ckpt_dir) if n.startswith("step-"))
    for old in kept[:-keep]:
        shutil.rmtree(os.path.join(ckpt_dir, old), ignore_errors=True)
    return name


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--step-seconds", type=float, default=0.0, help="sleep after each step")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", type=int, default=2)
    args = p.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data_gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(SAMPLES, FEATURES, generator=data_gen)
    true_w = torch.randn(FEATURES, CLASSES, generator=data_gen)
    y = (x @ true_w + 0.5 * torch.randn(SAMPLES, CLASSES, generator=data_gen)).argmax(dim=1)
    x, y = x.to(device), y.to(device)

    torch.manual_seed(args.seed)
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, CLASSES)).to(device)
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = torch.Generator().manual_seed(args.seed + 1)  # which samples each step takes
    step = 0
    resume = os.environ.get("SCHED_RESUME_FROM")
    if resume:
        # On the CPU: the generators take CPU tensors; load_state_dict moves the rest.
        state = torch.load(os.path.join(resume, "state.pt"), map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        batches.set_state(state["batches"])
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
        print("resumed from step %d on %s" % (step, torch.cuda.get_device_name(0)
                                              if device.type == "cuda" else "cpu"), flush=True)
    else:
        print("starting on %s" % (torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"),
              flush=True)
    ckpt_dir = os.environ.get("SCHED_CHECKPOINT_DIR")
    stopping = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))

    loss_fn = torch.nn.CrossEntropyLoss()
    while step < args.steps:
        idx = torch.randint(0, SAMPLES, (BATCH,), generator=batches).to(device)
        loss = loss_fn(model(x[idx]), y[idx])
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        step += 1
        print("step %d loss %.6f" % (step, loss.item()), flush=True)
        if args.step_seconds > 0:
            time.sleep(args.step_seconds)
        if ckpt_dir and (step % args.checkpoint_every == 0 or stopping):
            state = {"step": step, "model": model.state_dict(), "optim": optim.state_dict(),
                     "batches": batches.get_state(), "torch_rng": torch.get_rng_state()}
            print("checkpoint %s" % publish(ckpt_dir, state, step, args.keep), flush=True)
        if stopping:
            print("stopped at step %d by SIGTERM" % step, flush=True)
            return 143

    h = hashlib.sha256()
    for t in model.state_dict().values():
        h.update(t.detach().cpu().numpy().tobytes())
    with torch.no_grad():
        acc = (model(x).argmax(dim=1) == y).float().mean().item()
    print("result: steps=%d accuracy=%.4f weights_sha256=%s" % (step, acc, h.hexdigest()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
