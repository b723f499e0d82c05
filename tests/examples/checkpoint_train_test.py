#!/usr/bin/env python3
"""Tests deploy/examples/checkpoint_train.py against the checkpoint contract (docs/checkpoints.md).

The agent's part is played here by hand: a fresh SCHED_CHECKPOINT_DIR per attempt, SIGKILL in the
middle of a run, and for the next attempt a copy of the newest published checkpoint inside the new
folder with SCHED_RESUME_FROM pointing at it.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

SCRIPT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                       "deploy", "examples", "checkpoint_train.py"))
PUBLISHED = re.compile(r"step-(\d{6})")


def job_env(**sched_vars):
    """The test's environment without any SCHED_* variable, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHED_")}
    env.update(sched_vars)
    return env


def run_job(env, *args):
    proc = subprocess.run([sys.executable, SCRIPT, *args], env=env, capture_output=True,
                          text=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError("exit %d, stderr:\n%s" % (proc.returncode, proc.stderr))
    return proc.stdout


def result_line(stdout):
    lines = [l for l in stdout.splitlines() if l.startswith("result: ")]
    if len(lines) != 1:
        raise AssertionError("expected one result line in:\n" + stdout)
    return lines[0]


def published(folder):
    return sorted(n for n in os.listdir(folder) if PUBLISHED.fullmatch(n))


def read_state(checkpoint):
    with open(os.path.join(checkpoint, "state.json")) as f:
        return json.load(f)


class CheckpointTrainTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="checkpoint_train_test.")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def folder(self, name):
        path = os.path.join(self.tmp, name)
        os.mkdir(path)
        return path

    def uninterrupted_result(self):
        stdout = run_job(job_env())
        self.assertNotIn("checkpoint", stdout)
        self.assertNotIn("resumed", stdout)
        return result_line(stdout)

    def test_result_is_deterministic_and_well_formed(self):
        line = self.uninterrupted_result()
        self.assertRegex(line,
                         r"^result: steps=300 loss=\d+\.\d+(e-?\d+)? weights_sha256=[0-9a-f]{64}$")
        self.assertEqual(line, self.uninterrupted_result())
        other_seed = result_line(run_job(job_env(), "--seed", "2"))
        self.assertNotEqual(line, other_seed)

    def test_clean_run_leaves_only_the_newest_published_checkpoints(self):
        ckpt = self.folder("attempt1")
        stdout = run_job(job_env(SCHED_CHECKPOINT_DIR=ckpt), "--keep", "2")
        self.assertEqual(result_line(stdout), self.uninterrupted_result())
        announced = re.findall(r"^checkpoint (step-\d{6}) loss=\d+\.\d{6}$", stdout, re.M)
        self.assertEqual(announced, ["step-%06d" % s for s in range(20, 301, 20)])
        # No temporary name is left behind, and only --keep published ones remain.
        self.assertEqual(sorted(os.listdir(ckpt)), ["step-000280", "step-000300"])
        self.assertEqual(read_state(os.path.join(ckpt, "step-000300"))["step"], 300)

    def test_killed_run_resumes_to_the_same_result(self):
        expected = self.uninterrupted_result()
        clean = self.folder("clean")
        run_job(job_env(SCHED_CHECKPOINT_DIR=clean))

        # Attempt 1: killed without notice once a checkpoint has been published.
        first = self.folder("attempt1")
        proc = subprocess.Popen([sys.executable, SCRIPT, "--step-seconds", "0.02"],
                                env=job_env(SCHED_CHECKPOINT_DIR=first),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 15
        while not published(first):
            self.assertIsNone(proc.poll(), "the job ended before it published a checkpoint")
            self.assertLess(time.monotonic(), deadline, "no checkpoint published in time")
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        stdout, _ = proc.communicate(timeout=10)
        self.assertEqual(proc.returncode, -signal.SIGKILL, "the job ended before it was killed")
        self.assertNotIn("result:", stdout)
        names = published(first)
        for name in names:  # published means complete: every one reads back
            self.assertEqual(read_state(os.path.join(first, name))["step"],
                             int(PUBLISHED.fullmatch(name).group(1)))
        newest = names[-1]

        # Attempt 2: a new folder holding a copy of the newest checkpoint, as the agent prepares it.
        second = self.folder("attempt2")
        resume_from = os.path.join(second, newest)
        shutil.copytree(os.path.join(first, newest), resume_from)
        stdout = run_job(job_env(SCHED_CHECKPOINT_DIR=second, SCHED_RESUME_FROM=resume_from))
        resumed = re.findall(r"^resumed from step (\d+)$", stdout, re.M)
        self.assertEqual(len(resumed), 1, stdout)
        step = int(resumed[0])
        self.assertGreater(step, 0)
        self.assertEqual(step, int(PUBLISHED.fullmatch(newest).group(1)))
        self.assertEqual(result_line(stdout), expected)
        # Not only the weights: the RNG state and the loss history came through exactly too.
        self.assertEqual(read_state(os.path.join(second, "step-000300")),
                         read_state(os.path.join(clean, "step-000300")))
        self.assertEqual([n for n in os.listdir(second) if not PUBLISHED.fullmatch(n)], [])


if __name__ == "__main__":
    unittest.main()
