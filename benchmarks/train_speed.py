"""The training step: a plain DataLoader + Trainer baseline against wide_lightning's fast path, side by side.

Baseline (what a researcher writes first): a per-sample dataset that turns each MNIST digit into a
PIL image and then a normalized tensor (what ``torchvision.datasets.MNIST`` with ``ToTensor`` and
``Normalize`` does), a ``DataLoader`` with workers and pinned memory, and a plain ``Trainer`` with the
progress bar refreshed every step. Ours: the same network and hyper-parameters (``ConvClassifier``,
SGD lr 0.01, momentum 0.9, batch 128) with the data resident on the device (``placement=device``),
batches normalized on the device, the progress bar refreshed every 50 steps, and optionally
``CompileNetwork``, bf16 mixed precision, or ``CapturedTrainingStep`` (``resident_captured``: the
whole step, update included, recorded once as a CUDA graph and replayed). For reference, ``bare_loop`` is what a researcher writes
without Lightning: the dataset as one device tensor, ``randperm`` batches, a hand-written SGD loop and
one accuracy sync per validation epoch. All are timed over training plus the per-epoch validation,
after a warm-up of a few steps that is not counted, and all report validation accuracy, so a speed-up
never hides a loss of accuracy; every variant's timed network starts from the same initialization.
``--repeats`` runs the variants round-robin and reports medians (on a shared machine the load drifts;
interleaving spreads the drift over all variants).

    python benchmarks/train_speed.py --data-dir ../shared/datasets --epochs 10 --width 2048   # a GPU
    python benchmarks/train_speed.py --data-dir ../shared/datasets --epochs 1 --limit-batches 60 --width 20 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import TQDMProgressBar
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from wide_lightning import MNIST, ConvClassifier
from wide_lightning.nets import ConvNet
from wide_lightning.speed import CapturedTrainingStep, CompileNetwork


class TorchvisionStyleMNIST(Dataset):
    """Per-sample PIL -> tensor -> normalize, as ``torchvision.datasets.MNIST(transform=...)`` serves a digit."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: float, std: float) -> None:
        self.images, self.labels = images[:, 0].numpy(), labels
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(Image.fromarray(self.images[index], mode="L")), self.labels[index]


class PlainLoaders(MNIST):
    """The baseline's data: the same splits, served by a per-sample torchvision-style DataLoader."""

    def __init__(self, *args, workers: int = 8, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.workers = workers

    def _plain(self, split: str, shuffle: bool) -> DataLoader:
        data = self.dataset(split)
        return DataLoader(TorchvisionStyleMNIST(data.images, data.labels["digit"], self.mean[0], self.std[0]),
                          batch_size=self.batch_size, shuffle=shuffle, num_workers=self.workers,
                          pin_memory=torch.cuda.is_available(), persistent_workers=self.workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._plain("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._plain("val", shuffle=False)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        return batch  # already normalized per sample


#: Every variant's timed network is drawn from this seed, so that their accuracies differ only by the
#: batch order: at n = 20 an unlucky draw loses most of its penultimate units within 60 steps (the
#: bare loop's draw lost 18 of 20 and ended at 0.22 val acc while the others reached 0.5-0.7).
INIT_SEED = 0


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bare_loop(args: argparse.Namespace) -> dict:
    """The hand-written resident loop: no Lightning, no metrics objects, one sync per validation epoch."""
    seed_everything(0, verbose=False)
    data = MNIST(data_dir=args.data_dir, batch_size=128, download=False)
    device = torch.device(args.device)

    def resident(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        part = data.dataset(split)
        return part.images.to(device), part.labels["digit"].to(device)

    (train_x, train_y), (val_x, val_y) = resident("train"), resident("val")
    batches = lambda n: min(args.limit_batches or n, n)  # noqa: E731

    def fit(epochs: int, max_steps: int | None, validate: bool) -> tuple[int, float]:
        torch.manual_seed(INIT_SEED)  # the timed net starts from the Lightning variants' initialization
        net = ConvNet((1, 28, 28), 10, args.width, 32).to(device)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        steps, accuracy = 0, float("nan")
        for _ in range(epochs):
            net.train()
            order = torch.randperm(len(train_y), device=device)
            for i in range(batches(-(-len(train_y) // 128))):
                index = order[i * 128:(i + 1) * 128]
                loss = torch.nn.functional.cross_entropy(net(data.batch_transform(train_x[index], train=True)), train_y[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
                if max_steps is not None and steps >= max_steps:
                    return steps, accuracy
            if validate:
                net.eval()
                correct = torch.zeros((), device=device, dtype=torch.long)
                count = 0
                with torch.no_grad():
                    for i in range(batches(-(-len(val_y) // 128))):
                        x, y = val_x[i * 128:(i + 1) * 128], val_y[i * 128:(i + 1) * 128]
                        correct += (net(data.batch_transform(x, train=False)).argmax(1) == y).sum()
                        count += len(y)
                accuracy = correct.item() / count
        return steps, accuracy

    fit(1, args.warmup_steps, validate=False)  # warm-up (CUDA context, cuDNN autotuning), not timed
    synchronize(args.device)
    start = time.perf_counter()
    steps, accuracy = fit(args.epochs, None, validate=True)
    synchronize(args.device)
    return {"variant": "bare_loop", "seconds": time.perf_counter() - start, "steps": steps, "val_acc": accuracy}


def warm_compiled(model: ConvClassifier, data: MNIST, device: str) -> None:
    """Compile and CUDA-graph the timed net outside Lightning, on every batch shape a fit will meet.

    The timed net is warmed itself and then given back its initial weights in place (the parameters
    keep their addresses, which the recorded CUDA graphs read). Warming a throwaway compiled net
    instead crashed under ``reduce-overhead`` on an H100 (torch 2.11): Lightning moves a finished
    net back to the CPU, and the next net's recorded backward still read the throwaway's parameters
    ("mat2 is on cpu").
    """
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    net = model.net.to(device)
    data.setup("fit")
    sizes = {"train": {128, len(data.dataset("train")) % 128} - {0}, "val": {128, len(data.dataset("val")) % 128} - {0}}
    for train, split in ((True, "train"), (False, "val")):
        net.train(train)
        for size in sorted(sizes[split], reverse=True):
            x = data.batch_transform(torch.rand(size, 1, 28, 28, device=device), train=train)
            for _ in range(3):  # cudagraph trees record on the second or third call
                torch.compiler.cudagraph_mark_step_begin()
                if train:
                    # no accumulation: a backward graph's outputs (the grads) are overwritten by its next replay
                    net.zero_grad(set_to_none=True)
                    net(x).sum().backward()
                else:
                    with torch.inference_mode():
                        net(x)
    net.zero_grad(set_to_none=True)
    with torch.no_grad():
        model.load_state_dict(initial)


def run(variant: str, args: argparse.Namespace) -> dict:
    if variant == "bare_loop":
        return bare_loop(args)
    seed_everything(0, verbose=False)
    common = dict(data_dir=args.data_dir, batch_size=128, download=False)
    if variant == "baseline":
        data = PlainLoaders(workers=args.workers, **common)
    else:
        data = MNIST(placement="device", **common)
    compiled = variant.endswith("compile")
    precision = "bf16-mixed" if "bf16" in variant else "32-true"
    limits = dict(limit_train_batches=args.limit_batches, limit_val_batches=args.limit_batches) if args.limit_batches else {}
    trainer_kwargs = dict(accelerator=args.device, devices=1, logger=False, enable_checkpointing=False,
                          enable_model_summary=False, num_sanity_val_steps=0, precision=precision)
    progress = TQDMProgressBar(refresh_rate=1 if variant == "baseline" else 50)
    # warm-up (CUDA context, cuDNN autotuning, the data's first load), not timed
    warm_up = ConvClassifier(num_classes=10, input_shape=(1, 28, 28), width=args.width, lr=0.01)
    Trainer(max_steps=args.warmup_steps, callbacks=[progress], limit_val_batches=0, **trainer_kwargs).fit(warm_up, datamodule=data)
    torch.manual_seed(INIT_SEED)
    model = ConvClassifier(num_classes=10, input_shape=(1, 28, 28), width=args.width, lr=0.01)
    callbacks = [progress]
    if compiled:
        callbacks.append(CompileNetwork(mode=args.compile_mode))
        model.net.compile(mode=args.compile_mode)  # CompileNetwork sees it compiled and leaves it
        warm_compiled(model, data, args.device)
    if variant.endswith("captured"):
        callbacks.append(CapturedTrainingStep())  # its eager warm-up steps and the recording are timed
    trainer = Trainer(max_epochs=args.epochs, callbacks=callbacks, **limits, **trainer_kwargs)
    synchronize(args.device)
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    synchronize(args.device)
    seconds = time.perf_counter() - start
    return {"variant": variant, "seconds": seconds, "steps": trainer.global_step,
            "val_acc": float(trainer.callback_metrics.get("val/acc", float("nan"))), "trainer": trainer}


def run_reported(variant: str, args: argparse.Namespace) -> dict:
    """One timed run, its row printed at once (a later variant's crash or a time limit loses nothing)."""
    try:
        result = run(variant, args)
        result.pop("trainer", None)  # the table needs the numbers only; the next variant gets the memory back
    except Exception as error:  # noqa: BLE001 - a failed variant is a row of the table, not the end of the run
        result = {"variant": variant, "seconds": float("nan"), "steps": 0, "val_acc": float("nan"),
                  "error": f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"}
    print(f"RESULT {result}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit-batches", type=int, default=0, help="batches per epoch (0: all)")
    parser.add_argument("--workers", type=int, default=8, help="the baseline's DataLoader workers")
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variants", default="baseline,bare_loop,resident,resident_compile",
                        help="comma-separated, the first is the baseline: baseline, bare_loop, resident, resident_compile, "
                             "resident_bf16, resident_bf16_compile, resident_captured")
    parser.add_argument("--repeats", type=int, default=1, help="rounds over all variants; the table gives medians")
    parser.add_argument("--compile-mode", default="reduce-overhead" if torch.cuda.is_available() else "default")
    args = parser.parse_args()
    variants = args.variants.split(",")
    rounds = [[run_reported(v, args) for v in variants] for _ in range(args.repeats)]
    results = []
    for i, variant in enumerate(variants):
        runs = [r[i] for r in rounds]
        seconds = [r["seconds"] for r in runs]
        results.append({"variant": variant, "seconds": statistics.median(seconds), "spread": max(seconds) - min(seconds),
                        "steps": runs[0]["steps"], "val_acc": statistics.median(r["val_acc"] for r in runs)})
    base = results[0]["seconds"]
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"\nMNIST ConvClassifier n={args.width}, batch 128, {args.epochs} epoch(s)"
          f"{f', {args.limit_batches} batches each' if args.limit_batches else ''}, {device}, torch {torch.__version__}, "
          f"median of {args.repeats} round(s)")
    print(f"| variant | wall time (median) | max - min | steps/s | val acc | speed-up vs {results[0]['variant']} |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['variant']} | {r['seconds']:.1f} s | {r['spread']:.1f} s | {r['steps'] / r['seconds']:.1f} | "
              f"{r['val_acc']:.4f} | {base / r['seconds']:.2f}x |")
    for r in (r for round_ in rounds for r in round_ if "error" in r):
        print(f"{r['variant']} failed: {r['error']}")


if __name__ == "__main__":
    main()
