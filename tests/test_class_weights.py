"""--class-weights reach the loss in every mode that trains through the Trainer (here LoRA, a peft-wrapped
model): weights that silence two of three classes leave those two unlearned, while the third is learned."""

from __future__ import annotations

import json

import tunesuite

FLAGS = {"mode": "lora", "learning_rate": 1e-2, "num_train_epochs": 5, "warmup_steps": 0.1, "seed": 3,
         "save_strategy": "no", "disable_tqdm": True, "do_predict": True}


def test_class_weights_steer_the_loss_of_a_peft_model(pretrained_bert, topic_data, tmp_path):
    even = tunesuite.finetune("text-classification", str(pretrained_bert), str(topic_data),
                              output_dir=str(tmp_path / "even"), class_weights=["2", "2", "2"], **FLAGS)
    assert even["eval_accuracy"] >= 0.9  # equal weights: the plain mean loss, the toy problem is learned
    tunesuite.finetune("text-classification", str(pretrained_bert), str(topic_data),
                       output_dir=str(tmp_path / "only"), class_weights=["1", "0", "0"], **FLAGS)
    rows = [json.loads(line) for line in (tmp_path / "only" / "predictions.jsonl").read_text().splitlines()]
    first = sorted({r["reference"] for r in rows})[0]  # class id 0: the names sort
    weighted = [r for r in rows if r["reference"] == first]
    assert sum(r["label"] == first for r in weighted) >= 0.9 * len(weighted)  # the one class with weight: learned
    silenced = [r for r in rows if r["reference"] != first]
    assert sum(r["label"] == r["reference"] for r in silenced) <= 0.6 * len(silenced)  # no loss, no learning
    assert json.loads((tmp_path / "only" / "adapter_config.json").read_text())  # a LoRA run indeed
    assert json.loads((tmp_path / "only" / "config.json").read_text())["tunesuite_class_weights"] == [1.0, 0.0, 0.0]
