"""What geomvol knows of its data sets, models and figures, in one torch-free place.

The config checks, the data code, the models, the figures, ``geomvol trace`` and the Snakefile all read
these facts here (importing this module loads no torch, so the Snakefile and ``geomvol check-config``
start fast); tests check them against the data loaders' and the models' own outputs.
"""

from __future__ import annotations

# --- data sets ------------------------------------------------------------------------------------

# torchvision's image classification data sets that geomvol reads by class name (``dataset: {name: torchvision,
# class: ...}``), with the study's two under their own names (mnist, cifar10): each class's on-disk format, which
# geomvol reads through the class and writes small stand-ins in, and the shape of one image in that format.
TORCHVISION_FORMATS = {
    "MNIST": ("idx", (1, 28, 28)), "FashionMNIST": ("idx", (1, 28, 28)), "KMNIST": ("idx", (1, 28, 28)),
    "CIFAR10": ("cifar", (3, 32, 32)), "CIFAR100": ("cifar", (3, 32, 32)), "STL10": ("stl10", (3, 96, 96)),
    "SVHN": ("svhn", (3, 32, 32)),
}
# torchvision classes that take split="train" / "test" (the others: train=True / False)
SPLIT_ARGUMENT_LAYOUTS = ("stl10", "svhn")
STUDY_DATASET_CLASSES = {"mnist": "MNIST", "cifar10": "CIFAR10"}  # the study's data sets, as torchvision's classes
TORCHVISION_DATASETS = (*STUDY_DATASET_CLASSES, "torchvision")  # read from a data root through torchvision's classes
# read from a data root (or a synthetic stand-in the pipeline writes): torchvision's classes, and a user's own images
# through torchvision's ImageFolder (geomvol.data.folders)
ROOT_DATASETS = (*TORCHVISION_DATASETS, "image_folder")
IMAGE_DATASETS = (*ROOT_DATASETS, "digits")  # digits: scikit-learn's load_digits, shipped with geomvol
# The shape of one model input of the data sets whose shape does not depend on their class: a point of the plane,
# or an image (C, H, W).
INPUT_SHAPES = {"sinusoid": (2,), "mnist": (1, 28, 28), "cifar10": (3, 32, 32), "digits": (1, 8, 8)}
# Class names of the study's image data sets, as torchvision names them (digits: MNIST's); torchvision's other
# classes name theirs when read.
CLASSES = {
    "mnist": ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
              "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}
CLASSES["digits"] = CLASSES["mnist"]
CLASS_COUNTS = {"CIFAR100": 100}  # torchvision classes with other than 10 classes
PIXEL_MAX = {"mnist": 255, "cifar10": 255, "torchvision": 255, "image_folder": 255, "digits": 16}  # inputs start from pixels / pixel_max
SPLIT_SIZES = {"mnist": (60000, 10000), "cifar10": (50000, 10000)}  # (training, test) images of the real data sets
SPLIT_NAMES = {"train": "training", "test": "test", "all": "training and test"}  # where anchor images come from
SPLIT_KEYS = {"train": ("x", "y", "index"), "test": ("x_test", "y_test", "index_test")}  # a prepared file's tensors
# The files each torchvision class reads under a data root: the IDX files of MNIST's format ({cls}: the class's
# name), CIFAR's pickled batches, STL-10's binary arrays (its unlabeled images too: torchvision checks every file).
IDX_FILES = [f"{{cls}}/raw/{split}-{part}-idx{rank}-ubyte" for split in ("train", "t10k")
             for part, rank in (("images", 3), ("labels", 1))]
CIFAR_FILES = {
    "CIFAR10": [*(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)), "cifar-10-batches-py/test_batch",
                "cifar-10-batches-py/batches.meta"],
    "CIFAR100": ["cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"],
}


STL10_FILES = [f"stl10_binary/{file}" for file in ("train_X.bin", "train_y.bin", "unlabeled_X.bin", "test_X.bin",
                                                   "test_y.bin", "class_names.txt")]
# SVHN's MATLAB files (read with scipy: pip install 'geomvol[svhn]'); its labels are the digits, 0 for a zero (the
# files' 10), and torchvision's class names none
SVHN_FILES = ["train_32x32.mat", "test_32x32.mat"]
SVHN_CLASSES = [str(digit) for digit in range(10)]


def torchvision_class(dataset: dict) -> str | None:
    """The torchvision class a resolved image ``dataset`` section is read through (None: not torchvision's)."""
    if dataset["name"] == "torchvision":
        return dataset["class"]
    return STUDY_DATASET_CLASSES.get(dataset["name"])


def dataset_label(dataset: dict) -> str:
    """A data set's name in messages: the torchvision class for ``name: torchvision`` and ``image_folder``."""
    if dataset["name"] == "image_folder":
        return "ImageFolder"
    return dataset["class"] if dataset["name"] == "torchvision" else dataset["name"]


def input_shape(dataset: dict) -> tuple[int, ...]:
    """The shape of one model input of a (resolved) ``dataset`` section (an image folder's: its images resized
    to ``image_size``, in ``channels`` channels)."""
    if dataset["name"] == "image_folder":
        return (dataset["channels"], *dataset["image_size"])
    cls = torchvision_class(dataset)
    return TORCHVISION_FORMATS[cls][1] if cls else INPUT_SHAPES[dataset["name"]]


def class_count(dataset: dict) -> int:
    """How many classes a (resolved) ``dataset`` section's labels have (the sinusoid: its two sides; an image
    folder: its class folders)."""
    if dataset["name"] == "torchvision":
        return CLASS_COUNTS.get(dataset["class"], 10)
    if dataset["name"] == "image_folder":
        from geomvol.data.folders import folder_classes

        return len(folder_classes(dataset))
    return len(CLASSES[dataset["name"]]) if dataset["name"] in CLASSES else 2


def raw_paths(dataset: dict) -> list:
    """The files a resolved data-root ``dataset`` section's data set is read from: those of torchvision's layout
    for its class, or every image of an image folder (as ImageFolder lists them)."""
    from pathlib import Path

    if dataset["name"] == "image_folder":
        from geomvol.data.folders import folder_files

        return folder_files(dataset)
    return [Path(dataset["root"]) / name for name in expected_files(torchvision_class(dataset))]


def synthetic_spec(dataset: dict) -> dict:
    """What a resolved ``dataset`` section's synthetic stand-in is (the synthesize job's params): the format it is
    written in (a torchvision class, or ImageFolder), its sizes and seed; for an image folder, the image shape
    (C, H, W) and the layout (``folders``: train/ and test/; ``flat``: one folder of classes, split later)."""
    spec = {"format": torchvision_class(dataset) or "ImageFolder", **dataset["synthetic"], "seed": dataset["seed"]}
    if dataset["name"] == "image_folder":
        spec.update(shape=list(input_shape(dataset)), layout="folders" if dataset["split_rule"] == "folders" else "flat")
    return spec


def expected_files(cls: str) -> list[str]:
    """The files torchvision's class ``cls`` reads under a data root."""
    layout = TORCHVISION_FORMATS[cls][0]
    if layout == "cifar":
        return list(CIFAR_FILES[cls])
    if layout == "stl10":
        return list(STL10_FILES)
    if layout == "svhn":
        return list(SVHN_FILES)
    return [file.format(cls=cls) for file in IDX_FILES]


# --- models and their feature maps ------------------------------------------------------------------

WEIGHTS_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")  # model.weights: a file by its path, else a weights name


def weights_is_file(weights: str) -> bool:
    """Whether a ``model.weights`` value is a file's path (a ``/`` in it, or a state dict's suffix) rather than
    the name of torchvision's weights (``IMAGENET1K_V1``, ``ResNet18_Weights.DEFAULT``)."""
    return "/" in weights or weights.endswith(WEIGHTS_FILE_SUFFIXES)


# Feature maps of each model, by name (the first is the default one to probe).
FEATURE_MAPS = {"shallow": ("hidden",), "resnet34": ("pooled", "block1", "block2", "block3", "block4")}
RESNET_CHANNELS = {"block1": 64, "block2": 128, "block3": 256, "block4": 512}
# The study's average-pooling windows (stride = window): every block of a 32 x 32 input pooled to 512 values
# (block1 64x32x32 -> 64x2x4, block2 128x16x16 -> 128x2x2, block3 256x8x8 -> 256x1x2, block4 512x4x4 -> 512).
STUDY_BLOCK_WINDOWS = {"block1": [16, 8], "block2": [8, 8], "block3": [8, 4], "block4": [4, 4]}
# Feature maps that are one function under two names when block4 is averaged over its whole map.
SAME_FEATURE_MAPS = {"pooled": "block4"}


def resnet_block_shape(block: str, input_shape) -> tuple[int, int, int]:
    """(C, H, W) of a ResNet34 block's output for an input (C_in, H_in, W_in): the CIFAR stem and block1
    keep the size, each later block halves it (3 x 3 convolution, stride 2, padding 1)."""
    height, width = input_shape[1:]
    for _ in range(int(block[len("block"):]) - 1):
        height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
    return RESNET_CHANNELS[block], height, width


def block_windows(block_pooling) -> dict | None:
    """The per-block pooling windows of a resolved ``probe.block_pooling``; None: the global mean
    (``global_mean``, or a model without blocks)."""
    return block_pooling if isinstance(block_pooling, dict) else None


def feature_width(model: dict, feature_map: str, input_shape, block_pooling=None) -> int:
    """The flattened width n of a feature map of a (resolved) model section, for inputs of ``input_shape``,
    with the ResNet blocks pooled as ``block_pooling`` says (a resolved ``probe.block_pooling``)."""
    if model["name"] == "shallow":
        return model["width"]
    if feature_map == "pooled":
        return RESNET_CHANNELS["block4"]
    channels, height, width = resnet_block_shape(feature_map, input_shape)
    windows = block_windows(block_pooling)
    if windows is None:
        return channels
    window_height, window_width = windows[feature_map]
    return channels * (height // window_height) * (width // window_width)


def same_feature_maps(model: dict, input_shape, block_pooling=None) -> dict:
    """Feature maps that are one function under two names: the ResNet's ``pooled`` (the global mean of
    block4) is ``block4`` when block4 is averaged over its whole map."""
    if model["name"] != "resnet34":
        return {}
    windows = block_windows(block_pooling)
    if windows is None or tuple(windows["block4"]) == resnet_block_shape("block4", input_shape)[1:]:
        return dict(SAME_FEATURE_MAPS)
    return {}


# --- outputs -------------------------------------------------------------------------------------------

EPOCH_CONVENTION = ("epoch E is the network after E passes over the training set; epoch 0 is the untrained "
                    "network. The study's scripts train first and then save, so their 'epoch E' is epoch E + 1 here")

# --- figures ------------------------------------------------------------------------------------------

# Figure kinds drawn from one experiment's volume store (geomvol figure KIND): the 2-D input grid; planes
# and lines through images; planes per block; singular-value spectra at the anchor images; the Gaussian
# curvature on the grid or the planes; the direction of the stretch (the metric's indicatrices) on the grid or
# the planes.
FIGURES = ("volume", "planes", "lines", "blocks", "spectra", "curvature", "stretch")
# Figure kinds drawn from other stores: two experiments' volume stores side by side; the measures store's two.
OTHER_FIGURES = ("compare", "measures", "profiles")
