"""Run by tests/train/test_objectives.py under `torchrun --nproc_per_node 2`: train each non-CroCo objective for a
few steps in one process group (the group is made here once, so that three runs share one torchrun start).

    python -m torch.distributed.run --nproc_per_node 2 tests/train/ddp_objectives.py SHARDS ROLLED OUT
"""

import sys
from pathlib import Path

import torch.distributed as dist

from trainkit import MICRO, MICRO_DINO, MICRO_POSE, MICRO_VIT
from slife.train import TrainConfig, run

if __name__ == "__main__":
    shards, rolled, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    dist.init_process_group("gloo")
    try:
        for name, kw, conf, data in (("dinov2", MICRO_VIT, MICRO_DINO, shards),
                                     ("egomotion", MICRO_VIT, MICRO_POSE, rolled),
                                     ("croco+egomotion", MICRO, MICRO_POSE, rolled)):
            cfg = TrainConfig(objective=name, preset="tiny", model_kwargs=kw, objective_conf=conf, steps=3,
                              batch_size=4, lr=1e-3, warmup_steps=1, precision="fp32", threads=1, num_workers=1,
                              preview_every=0, log_every=1, log_keys=True)
            run(cfg, data, out / name)
    finally:
        dist.destroy_process_group()
