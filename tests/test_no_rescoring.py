"""No wasted work after training: the final evaluation reuses the last epoch's scoring of the validation split
when the weights are the ones it scored, and scores again when they are not (the best checkpoint reloaded)."""

from __future__ import annotations

import pytest

import tunesuite
from tunesuite.train.trainer import TuneTrainer

FAST = {"num_train_epochs": 2, "warmup_steps": 0, "disable_tqdm": True, "seed": 3, "learning_rate": 1e-2,
        "mode": "lora", "do_predict": True}


@pytest.fixture
def predicted(monkeypatch):
    """The metric prefixes trainer.predict was called with."""
    calls: list[str] = []
    original = TuneTrainer.predict

    def predict(self, dataset, *args, metric_key_prefix="test", **kwargs):
        calls.append(metric_key_prefix)
        return original(self, dataset, *args, metric_key_prefix=metric_key_prefix, **kwargs)

    monkeypatch.setattr(TuneTrainer, "predict", predict)
    return calls


def test_final_evaluation_reuses_the_last_epochs(pretrained_bert, topic_data, tmp_path, predicted, monkeypatch):
    during: list[dict] = []  # what each evaluation during training returned
    original = TuneTrainer._evaluate
    monkeypatch.setattr(TuneTrainer, "_evaluate", lambda self, *a, **k: during.append(original(self, *a, **k))
                        or during[-1])
    result = tunesuite.finetune("text-classification", str(pretrained_bert), str(topic_data),
                                output_dir=str(tmp_path / "out"), save_strategy="no", **FAST)
    assert predicted == ["test"]  # the validation split was scored once, at the end of the last epoch
    assert len(during) == 2 and during[-1]["eval_loss"] == result["eval_loss"]
    assert during[-1]["eval_accuracy"] == result["eval_accuracy"]
    assert (tmp_path / "out" / "eval_per_class.json").exists()  # reports written from the kept predictions


def test_final_evaluation_scores_again_after_the_best_checkpoint_is_loaded(pretrained_bert, topic_data, tmp_path,
                                                                          predicted):
    tunesuite.finetune("text-classification", str(pretrained_bert), str(topic_data), output_dir=str(tmp_path / "o"),
                       early_stopping_patience=5, **FAST)
    assert predicted == ["eval", "test"]
