"""Checkpoints trained elsewhere, as a script of your own makes them: a plain PyTorch loop trains
examples/models.py's small CNN on images in one folder per class (torchvision's ImageFolder) and saves its
state dict at epochs 0 and 2 as examples/checkpoints/small_cnn_epoch_{0,2}.pt. The smoke config's
elsewhere-smoke experiment probes those files (``checkpoints: {0: ..., 2: ...}``, no training section) on the
generated image folder that its own-images-smoke experiment trains on.

Run from the checkout (it rewrites the two files):  python examples/train_elsewhere.py
"""

import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from models import small_cnn  # noqa: E402  (examples/models.py, beside this file)

# the images: the smoke config's generated image folder (dataset.synthetic of own-images-smoke: 60 training and
# 20 test images, 16 x 16 RGB, seed 0), written as PNG files in one folder per class
from geomvol.data.images import write_synthetic  # noqa: E402

EPOCHS_SAVED = (0, 2)


def main() -> None:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as root:
        write_synthetic("ImageFolder", root, 60, 20, seed=0, shape=(3, 16, 16))
        images = datasets.ImageFolder(f"{root}/train", transform=transforms.ToTensor())  # pixels in [0, 1]
        loader = DataLoader(images, batch_size=30, shuffle=True)
        model = small_cnn(width=8, num_classes=len(images.classes))
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        (HERE / "checkpoints").mkdir(exist_ok=True)
        for epoch in range(max(EPOCHS_SAVED) + 1):  # epoch E: the network after E passes over the images
            if epoch in EPOCHS_SAVED:
                torch.save(model.state_dict(), HERE / "checkpoints" / f"small_cnn_epoch_{epoch}.pt")
                print(f"saved epoch {epoch}")
            if epoch == max(EPOCHS_SAVED):
                break
            for x, y in loader:
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()


if __name__ == "__main__":
    main()
