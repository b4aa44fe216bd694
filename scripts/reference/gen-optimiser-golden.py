#!/usr/bin/env python3
"""Writes tests/golden/optimiser_cases.txt: optimiser trajectories and learning-rate schedules
from the reference implementations, for tests/test_optimiser.c.

Run with the reference venv:
    .venv-ref/bin/python scripts/reference/gen-optimiser-golden.py

Each case runs STEPS steps on three parameter groups (the middle one without weight decay, as
petl's trainer does for LayerNorm parameters and biases) with stored gradients:
    1. the gradients of the step are set;
    2. torch.nn.utils.clip_grad_norm_(params, 1.0) (its return value is recorded);
    3. the update, with the learning rate of
       transformers.get_linear_schedule_with_warmup(optimizer, warmup, total);
    4. scheduler.step().
The update is either
  - "torch": torch.optim.AdamW(lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=WD per group,
    foreach=False), bias-corrected, decay applied as p *= 1 - lr*wd before the Adam step; or
  - "bert": the AdamWeightDecayOptimizer of google-research/bert optimization.py (and
    google-research/adapter-bert, the paper authors' code), reimplemented below in float32
    NumPy operation by operation (TF computes in float32 with Python constants converted to
    float32):
        next_m = beta_1 * m + (1.0 - beta_1) * grad
        next_v = beta_2 * v + (1.0 - beta_2) * tf.square(grad)
        update = next_m / (tf.sqrt(next_v) + epsilon)
        if self._do_use_weight_decay(param_name): update += weight_decay_rate * param
        update_with_lr = learning_rate * update
        next_param = param - update_with_lr
    (no bias correction). Only the learning rate comes from the transformers schedule rather
    than BERT's own polynomial_decay + warmup, because petl uses the transformers schedule.

Format (floats: "%.9g" for float32 values, which round-trip through strtof; repr for doubles):
    groups G N1 DECAY1 ... NG DECAYG
    case NAME MODE LR WD WARMUP TOTAL STEPS      (MODE torch | bert)
    init V...                                    (all groups' params concatenated)
    step K LR_USED NORM                          (K from 1; NORM before clipping)
    grad V...                                    (before clipping)
    clipped V...                                 (after torch's clipping)
    param V...                                   (after the step)
    ... STEPS step blocks ...
    sched BASE_LR WARMUP TOTAL N LR_0 ... LR_{N-1}  (lr of the optimiser step after k steps)
"""
import os
import warnings

import numpy as np
import torch
import transformers
from transformers import get_linear_schedule_with_warmup

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "golden",
                   "optimiser_cases.txt")

GROUPS = [(7, True), (5, False), (13, True)]
STEPS = 20
BETAS = (0.9, 0.999)
EPS = 1e-6
MAX_NORM = 1.0


def f32s(a):
    return " ".join("%.9g" % float(x) for x in np.asarray(a, dtype=np.float32).ravel())


def make_data(seed):
    rs = np.random.RandomState(seed)
    n = sum(g[0] for g in GROUPS)
    init = (rs.randn(n) * 0.5).astype(np.float32)
    grads = []
    for k in range(STEPS):
        g = rs.randn(n).astype(np.float32)
        # Global norms from about 0.1 to 10: some steps clip, some do not.
        g *= np.float32(10.0 ** rs.uniform(-1.0, 1.0) / np.linalg.norm(g))
        g[3] = 0.0  # a zero gradient: the step must stay finite (eps) and only decay
        grads.append(g.astype(np.float32))
    return init, grads


def split(flat):
    out, off = [], 0
    for n, _ in GROUPS:
        out.append(flat[off:off + n])
        off += n
    return out


def run_torch(init, grads, lr, wd, warmup, total):
    params = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in split(init)]
    groups = [{"params": [p], "weight_decay": wd if decay else 0.0}
              for p, (_, decay) in zip(params, GROUPS)]
    opt = torch.optim.AdamW(groups, lr=lr, betas=BETAS, eps=EPS, foreach=False)
    sched = get_linear_schedule_with_warmup(opt, warmup, total)
    rows = []
    for g in grads:
        for p, gs in zip(params, split(g)):
            p.grad = torch.from_numpy(gs.copy())
        norm = torch.nn.utils.clip_grad_norm_(params, MAX_NORM)
        lr_used = opt.param_groups[0]["lr"]
        clipped = torch.cat([p.grad for p in params]).numpy().copy()
        opt.step()
        sched.step()
        rows.append((lr_used, float(norm), g, clipped,
                     torch.cat([p.detach() for p in params]).numpy()))
    return rows


def run_bert(init, grads, lr, wd, warmup, total):
    # Only the schedule and the clip come from torch / transformers here.
    params = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in split(init)]
    dummy = torch.optim.SGD(params, lr=lr)
    sched = get_linear_schedule_with_warmup(dummy, warmup, total)
    m = [np.zeros(n, np.float32) for n, _ in GROUPS]
    v = [np.zeros(n, np.float32) for n, _ in GROUPS]
    b1, b2 = np.float32(BETAS[0]), np.float32(BETAS[1])
    omb1, omb2 = np.float32(1.0 - BETAS[0]), np.float32(1.0 - BETAS[1])
    eps, wd32 = np.float32(EPS), np.float32(wd)
    rows = []
    for g in grads:
        for p, gs in zip(params, split(g)):
            p.grad = torch.from_numpy(gs.copy())
        norm = torch.nn.utils.clip_grad_norm_(params, MAX_NORM)
        lr_used = dummy.param_groups[0]["lr"]
        clipped = torch.cat([p.grad for p in params]).numpy().copy()
        lr32 = np.float32(lr_used)
        for i, (p, (_, decay)) in enumerate(zip(params, GROUPS)):
            param = p.detach().numpy()
            grad = p.grad.numpy()
            next_m = b1 * m[i] + omb1 * grad
            next_v = b2 * v[i] + omb2 * np.square(grad)
            update = next_m / (np.sqrt(next_v) + eps)
            if decay:
                update = update + wd32 * param
            update_with_lr = lr32 * update
            next_param = param - update_with_lr
            assert next_param.dtype == np.float32
            with torch.no_grad():
                p.copy_(torch.from_numpy(next_param))
            m[i], v[i] = next_m, next_v
        with warnings.catch_warnings():
            # The dummy optimiser only carries the schedule; it never steps.
            warnings.simplefilter("ignore")
            sched.step()
        rows.append((lr_used, float(norm), g, clipped,
                     torch.cat([p.detach() for p in params]).numpy()))
    return rows


def sched_values(base_lr, warmup, total):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = get_linear_schedule_with_warmup(opt, warmup, total)
    vals = []
    for _ in range(total + 3):  # a few past the end: the schedule stays at 0
        vals.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return vals


def main():
    cases = [
        ("torch_wd", "torch", 5e-2, 0.01, 3, STEPS, 1),
        ("bert_wd", "bert", 5e-2, 0.01, 3, STEPS, 1),
        ("torch_bigwd_nowarm", "torch", 2e-2, 0.5, 0, STEPS, 2),
        ("bert_bigwd_nowarm", "bert", 2e-2, 0.5, 0, STEPS, 2),
    ]
    with open(OUT, "w") as f:
        f.write("# generated by scripts/reference/gen-optimiser-golden.py with torch %s, "
                "transformers %s, NumPy %s\n" % (torch.__version__, transformers.__version__,
                                                 np.__version__))
        f.write("groups %d %s\n" % (len(GROUPS),
                                    " ".join("%d %d" % (n, int(d)) for n, d in GROUPS)))
        for name, mode, lr, wd, warmup, total, seed in cases:
            init, grads = make_data(seed)
            run = run_torch if mode == "torch" else run_bert
            rows = run(init, grads, lr, wd, warmup, total)
            f.write("case %s %s %r %r %d %d %d\n" % (name, mode, lr, wd, warmup, total, STEPS))
            f.write("init %s\n" % f32s(init))
            for k, (lr_used, norm, g, clipped, p) in enumerate(rows):
                f.write("step %d %r %r\n" % (k + 1, lr_used, norm))
                f.write("grad %s\n" % f32s(g))
                f.write("clipped %s\n" % f32s(clipped))
                f.write("param %s\n" % f32s(p))
        for base_lr, warmup, total in [(1e-3, 0, 10), (3e-4, 3, 10), (3e-4, 10, 10),
                                       (1.0, 1, 1), (1.0, 0, 1), (2e-5, 5, 50), (0.1, 7, 30)]:
            vals = sched_values(base_lr, warmup, total)
            f.write("sched %r %d %d %d %s\n" % (base_lr, warmup, total, len(vals),
                                                " ".join(repr(x) for x in vals)))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
