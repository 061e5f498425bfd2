"""Image data: folders, path,label manifests and Hub-style datasets; odd image modes; unreadable files give one
`error:` line naming the file (exit 2), or are skipped and counted with --skip-bad-files."""

from __future__ import annotations

import csv
import json
import logging
import random
import shutil

import pytest
from conftest import cli_error
from image_fixtures import CLASSES, make_image, write_image_folder
from PIL import Image

import tunesuite
from tunesuite.data import image
from tunesuite.errors import TunesuiteError

QUICK = {"max_steps": 2, "per_device_train_batch_size": 8, "eval_strategy": "no", "save_strategy": "no",
         "disable_tqdm": True, "learning_rate": 1e-3}


@pytest.fixture
def folder(tmp_path):
    return write_image_folder(tmp_path / "data", {"train": 4, "validation": 2})


def run_cli(capsys, argv: list[str]) -> str:
    return cli_error(capsys, tunesuite.IMAGE_CLASSIFICATION, argv)


def argv(model, dataset, tmp_path, *extra) -> list[str]:
    return ["--model", str(model), "--dataset", str(dataset), "--output-dir", str(tmp_path / "out"),
            "--max-steps", "1", "--disable-tqdm", "true", "--save-strategy", "no", *extra]


def test_unreadable_images_stop_the_run_naming_the_file(capsys, tiny_vit, folder, tmp_path):
    (folder / "train/red/notes.png").write_text("not an image")
    good = (folder / "train/blue/0.png").read_bytes()
    (folder / "train/blue/cut.png").write_bytes(good[: len(good) // 2])  # truncated
    line = run_cli(capsys, argv(tiny_vit, folder, tmp_path))
    assert "blue/cut.png" in line and "--skip-bad-files" in line and "(2 unreadable images in the train split)" in line


def test_skip_bad_files_trains_and_counts_them(tiny_vit, folder, tmp_path):
    (folder / "train/red/notes.png").write_text("not an image")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("tunesuite").addHandler(handler)
    try:
        result = tunesuite.finetune("image-classification", str(tiny_vit), str(folder), output_dir=str(tmp_path / "o"),
                                    skip_bad_files=True, **QUICK)
    finally:
        logging.getLogger("tunesuite").removeHandler(handler)
    assert "eval_accuracy" in result
    skipped = [r.getMessage() for r in records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and "skipped 1 unreadable image(s) in the train split" in skipped[0]
    assert "notes.png" in skipped[0]


def test_grayscale_palette_rgba_and_cmyk_images_become_rgb(tiny_resnet, folder, tmp_path):
    modes = ["L", "P", "RGBA", "LA", "CMYK"]
    for i, path in enumerate(sorted(folder.glob("*/*/*.png"))):
        Image.open(path).convert(modes[i % len(modes)]).save(path.with_suffix(".tiff" if i % 5 == 4 else ".png"))
        if i % 5 == 4:
            path.unlink()
    gray = folder / "validation/green/0.png"
    Image.fromarray(make_image(random.Random(1), "green")).convert("L").save(gray)
    assert all(image.open_image(p).mode == "RGB" for p in folder.glob("*/*/*.*"))
    result = tunesuite.finetune("image-classification", str(tiny_resnet), str(folder), output_dir=str(tmp_path / "o"),
                                **QUICK)
    # evaluation decoded the odd modes as prediction does: its accuracy is that of tunesuite.predict on the files
    files = sorted(folder.glob("validation/*/*.*"))
    predicted = tunesuite.predict(tmp_path / "o", [str(p) for p in files])
    hits = [p["label"] == f.parent.name for p, f in zip(predicted, files, strict=True)]
    assert result["eval_accuracy"] == pytest.approx(sum(hits) / len(hits))
    rgb = tmp_path / "rgb.png"
    Image.open(gray).convert("RGB").save(rgb)
    assert tunesuite.predict(tmp_path / "o", [str(gray)]) == tunesuite.predict(tmp_path / "o", [str(rgb)])


def _write_manifest(path, rows: list[dict]) -> None:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_manifest_with_relative_paths_and_unused_columns(tiny_vit, folder, tmp_path, suffix):
    """path,label manifests: paths relative to the manifest's folder; other columns are left alone."""
    where = tmp_path / "manifests"
    shutil.copytree(folder, where / "pics")
    for split in ("train", "validation"):
        rows = [{"path": f"pics/{split}/{c}/{i}.png", "label": c, "width": 32, "note": None if i else "first"}
                for c in CLASSES for i in range(len(list((folder / split / c).iterdir())))]
        _write_manifest(where / f"{split}{suffix}", rows)
    result = tunesuite.finetune("image-classification", str(tiny_vit), str(where), output_dir=str(tmp_path / "o"),
                                do_predict=True, **QUICK)
    rows = [json.loads(line) for line in (tmp_path / "o/predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and result["eval_accuracy"] == pytest.approx(
        sum(r["label"] == r["reference"] for r in rows) / len(rows))
    assert rows[0]["image"] == str(where / "pics/validation/red/0.png") and rows[0]["reference"] == "red"


def test_manifest_missing_file_names_it(capsys, tiny_vit, folder, tmp_path):
    rows = [{"path": str(p), "label": p.parent.name} for p in sorted(folder.glob("train/*/*.png"))]
    rows.append({"path": "gone/lost.png", "label": "red"})
    _write_manifest(tmp_path / "all.csv", rows)
    line = run_cli(capsys, argv(tiny_vit, tmp_path / "all.csv", tmp_path))
    assert f"cannot read image {tmp_path}/gone/lost.png: file not found" in line and "--skip-bad-files" in line


def test_hub_style_dataset_with_img_column(capsys, tiny_resnet, tmp_path):
    """A saved datasets.Dataset like cifar10: images embedded as bytes in column `img`, a ClassLabel `label`."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
    from datasets import Image as ImageFeature

    rng = random.Random(0)
    labels = [i % 3 for i in range(18)]
    rows = {"img": [Image.fromarray(make_image(rng, CLASSES[i])) for i in labels], "label": labels,
            "id": [str(i) for i in range(18)]}
    features = Features({"img": ImageFeature(), "label": ClassLabel(names=list(CLASSES)), "id": Value("string")})
    data = Dataset.from_dict(rows, features=features)
    DatasetDict(train=data, test=data.select(range(6))).save_to_disk(tmp_path / "cifar-like")
    result = tunesuite.finetune("image-classification", str(tiny_resnet), str(tmp_path / "cifar-like"),
                                output_dir=str(tmp_path / "o"), image_column="img", do_predict=True, **QUICK)
    assert {"eval_accuracy", "test_accuracy"} <= result.keys()
    rows = [json.loads(line) for line in (tmp_path / "o/predictions.jsonl").read_text().splitlines()]
    assert rows[0]["image"] == "row 0" and rows[0]["reference"] == CLASSES[0]
    line = run_cli(capsys, argv(tiny_resnet, tmp_path / "cifar-like", tmp_path, "--image-column", "picture"))
    assert "column 'picture' not found in the train split (columns: img, label, id); set --image-column" in line
    line = run_cli(capsys, argv(tiny_resnet, tmp_path / "cifar-like", tmp_path, "--image-column", "id"))
    assert "column 'id' of the train split holds no readable image (cannot read image " in line
    assert "set --image-column" in line


def test_augmentation_is_random_resized_crop_and_flip():
    picture = Image.fromarray(make_image(random.Random(0), "red")).resize((48, 40))
    crops = [image.augment(picture, (32, 32), random.Random(seed)) for seed in range(4)]
    assert all(c.size == (32, 32) for c in crops)
    assert image.augment(picture, (32, 32), random.Random(0)).tobytes() == crops[0].tobytes()  # seeded
    assert len({c.tobytes() for c in crops}) == 4
    cfg = tunesuite.cli.parse_args(tunesuite.IMAGE_CLASSIFICATION, ["--model", "m", "--dataset", "d"])
    assert cfg.task_args.augment and not cfg.task_args.skip_bad_files
    cfg = tunesuite.cli.parse_args(tunesuite.IMAGE_CLASSIFICATION, ["--model", "m", "--no-augment"])
    assert not cfg.task_args.augment


def test_arrays_open_as_the_same_image_in_any_common_layout():
    """uint8 height x width x 3, channels first (as torch keeps them), floats in [0, 1], and grayscale with or
    without its channel axis all give the one RGB image."""
    import numpy as np

    rgb = make_image(random.Random(3), "red")
    expected = np.asarray(image.open_image(Image.fromarray(rgb)))
    for layout in (rgb, rgb.transpose(2, 0, 1), rgb / 255.0, (rgb / 255.0).astype(np.float32).transpose(2, 0, 1)):
        assert np.array_equal(np.asarray(image.open_image(layout)), expected)
    gray = rgb[..., 0]
    for layout in (gray, gray[..., None], gray[None]):
        assert np.array_equal(np.asarray(image.open_image(layout)), np.stack([gray] * 3, axis=-1))


def test_open_image_errors_are_tunesuite_errors(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(TunesuiteError, match=r"cannot read image .*x.jpg: .*--skip-bad-files"):
        image.open_image(tmp_path / "x.jpg")
    with pytest.raises(TunesuiteError, match="expected an image file path or image, got int"):
        image.open_image(7, where="input 0")


@pytest.mark.parametrize("preset", ["vit_full", "vit_frozen", "vit_lora", "vit_prompt", "resnet_full", "resnet_frozen",
                                    "resnet_lora", "resnet_prompt"])
def test_presets_parse(preset):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / f"tasks/configs/{preset}.yaml"
    cfg = tunesuite.cli.parse_args(tunesuite.IMAGE_CLASSIFICATION, ["--config", str(path), "--dataset", "d"])
    assert cfg.run.mode == preset.split("_")[1] and cfg.model.model.split("/")[0] in ("google", "microsoft")
