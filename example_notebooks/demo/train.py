"""A stand-in training loop: prints progress, writes metrics the notebook pulls back."""

import argparse
import json
import platform
import random
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

random.seed(args.seed)
loss = 1.0
for epoch in range(1, args.epochs + 1):
    for step in range(0, 101, 25):
        print(f"\repoch {epoch} [{'#' * (step // 10):<10}] {step}%", end="", flush=True)
        time.sleep(0.05)
    loss *= 0.5 + random.random() * 0.2
    print(f"\n\033[32mepoch {epoch} loss={loss:.4f}\033[0m")  # PYTHONUNBUFFERED: no flush needed

out = Path("out")
out.mkdir(exist_ok=True)
metrics = {"loss": round(loss, 4), "epochs": args.epochs, "seed": args.seed, "python": platform.python_version()}
(out / "metrics.json").write_text(json.dumps(metrics))
print("metrics:", metrics)
