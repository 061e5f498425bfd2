"""A golden loss per mode: each registered mode trains the tiny BERT on the topics for a few steps at a fixed seed
(one thread), and its losses must be the recorded ones. A change anywhere on the path (data order, model loading,
what a mode trains, the Trainer's arguments) moves them; a change that moves none of them is a refactoring.

Recorded on this project's CPU host (torch threads 1). To record again after an intended change: set
GOLDEN_RECORD=1, run this file, paste the printed table into GOLDEN.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

import tunesuite

# Everything that sets the numbers, given explicitly: a mode's default learning rate or the batch-size default can
# change without moving these.
SETTINGS = {"max_steps": 4, "per_device_train_batch_size": 8, "learning_rate": 5e-3, "warmup_steps": 0,
            "lr_scheduler_type": "linear", "weight_decay": 0.0, "seed": 7, "logging_steps": 1,
            "eval_strategy": "no", "save_strategy": "no", "disable_tqdm": True}
PER_MODE = {"prompt": {"num_virtual_tokens": 4}, "lora": {"lora_r": 4},
            "miss": {"miss_r": 4}, "shira": {"shira_r": 4}}  # peft's defaults exceed the tiny BERT's 32 wide layers

# mode -> the loss logged at each of the 4 steps, then the run's train_loss (their mean)
GOLDEN = {
    "full": [1.0996942520141602, 1.1083284616470337, 1.076144814491272, 1.0914931297302246, 1.0939151644706726],
    "frozen": [1.0997251272201538, 1.1055139303207397, 1.0778257846832275, 1.0868457555770874, 1.0924776494503021],
    "bitfit": [1.0996942520141602, 1.1076440811157227, 1.0767040252685547, 1.092034101486206, 1.0940191149711609],
    "lora": [1.098806619644165, 1.110569715499878, 1.073621153831482, 1.087389588356018, 1.0925967693328857],
    "prompt": [1.1004407405853271, 1.1035826206207275, 1.0720043182373047, 1.0863878726959229, 1.0906038880348206],
    "ia3": [1.0996942520141602, 1.1075081825256348, 1.0773484706878662, 1.0920358896255493, 1.0941466987133026],
    "loha": [1.0974445343017578, 1.1055054664611816, 1.0735927820205688, 1.0880515575408936, 1.0911485850811005],
    "lokr": [1.0974445343017578, 1.1055011749267578, 1.073594331741333, 1.08805513381958, 1.0911487936973572],
    "vera": [1.0996942520141602, 1.1075080633163452, 1.077346682548523, 1.0920354127883911, 1.0941461026668549],
    "oft": [1.0996942520141602, 1.1075011491775513, 1.0772960186004639, 1.092035174369812, 1.0941316485404968],
    "adalora": [1.0996942520141602, 1.1075081825256348, 1.0773491859436035, 1.0920358896255493, 1.094146877527237],
    "boft": [1.0996942520141602, 1.1075067520141602, 1.0773420333862305, 1.0920355319976807, 1.0941446423530579],
    "fourierft": [1.098236083984375, 1.1038799285888672, 1.0771534442901611, 1.0924400091171265, 1.0929273664951324],
    "hra": [1.0996942520141602, 1.1075048446655273, 1.077338695526123, 1.092035174369812, 1.0941432416439056],
    "miss": [1.0996942520141602, 1.1074985265731812, 1.0772428512573242, 1.0920710563659668, 1.094126671552658],
    "c3a": [1.0997092723846436, 1.1075302362442017, 1.0773584842681885, 1.0920473337173462, 1.094161331653595],
    "shira": [1.0996942520141602, 1.1074848175048828, 1.0772815942764282, 1.0920336246490479, 1.0941235721111298],
    "randlora": [1.0996942520141602, 1.1075252294540405, 1.0771903991699219, 1.0919562578201294, 1.094091534614563],
    "vblora": [1.0996941328048706, 1.1075093746185303, 1.0773478746414185, 1.0920357704162598, 1.0941467881202698],
    "ln_tuning": [1.0996942520141602, 1.1076405048370361, 1.0769802331924438, 1.0920417308807373,
                  1.0940891802310944],
    "road": [1.0996942520141602, 1.1075081825256348, 1.077347755432129, 1.0920361280441284, 1.094146579504013],
    "delora": [1.0996942520141602, 1.1072280406951904, 1.081023097038269, 1.093254804611206, 1.0953000485897064],
    "waveft": [1.0996942520141602, 1.1060794591903687, 1.075008511543274, 1.0913071632385254, 1.093022346496582],
    "gralora": [1.0996942520141602, 1.1074769496917725, 1.077038288116455, 1.0920066833496094, 1.0940540432929993],
    "tinylora": [1.0996942520141602, 1.1075071096420288, 1.0773450136184692, 1.0920366048812866, 1.0941457450389862],
    "unilora": [1.0996942520141602, 1.1075081825256348, 1.0773487091064453, 1.0920358896255493, 1.0941467583179474],
    "pvera": [1.0982849597930908, 1.1055405139923096, 1.0801446437835693, 1.088759422302246, 1.093182384967804],
    "deft": [1.0996942520141602, 1.1075105667114258, 1.077346920967102, 1.0920369625091553, 1.0941471755504608],
    "glora": [1.0996942520141602, 1.1075032949447632, 1.0772740840911865, 1.0920356512069702, 1.09412682056427],
    "psoft": [1.0996942520141602, 1.1075029373168945, 1.0773097276687622, 1.0920305252075195, 1.094134360551834],
    "hira": [1.0996942520141602, 1.1075078248977661, 1.0773460865020752, 1.0920356512069702, 1.094145953655243],
    "supertuning": [1.0996942520141602, 1.1075092554092407, 1.077344536781311, 1.0920344591140747,
                    1.0941456258296967],
    "beft": [1.0996942520141602, 1.107505202293396, 1.0773301124572754, 1.0920382738113403, 1.094141960144043],
    "adamss": [1.0996942520141602, 1.1075061559677124, 1.0773348808288574, 1.092037320137024, 1.0941431522369385],
    "peanut": [1.0996942520141602, 1.1075079441070557, 1.0773390531539917, 1.0920357704162598, 1.0941442549228668],
    "frod": [1.0996942520141602, 1.1075081825256348, 1.0773478746414185, 1.0920355319976807, 1.0941464602947235],
}


def step_losses(out) -> list[float]:
    state = json.loads((out / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


@pytest.mark.parametrize("mode", [m for m in tunesuite.MODES if not tunesuite.MODES[m].trains_nothing
                                  and not tunesuite.MODES[m].fits])
def test_golden_loss(tiny_bert, topic_data, tmp_path, mode):
    assert torch.get_num_threads() == 1  # conftest's torch_threads: the sums run in one order
    out = tmp_path / mode
    result = tunesuite.finetune("text-classification", str(tiny_bert), str(topic_data), mode=mode, output_dir=str(out),
                                **SETTINGS, **PER_MODE.get(mode, {}))
    losses = [*step_losses(out), result["train_loss"]]
    if os.environ.get("GOLDEN_RECORD"):
        print(f"GOLDEN {mode!r}: {losses!r},")
        return
    torch.testing.assert_close(torch.tensor(losses, dtype=torch.float64),
                               torch.tensor(GOLDEN[mode], dtype=torch.float64), rtol=1e-4, atol=0)


# Whisper's speech recognition (the tiny converted Whisper, whisper_fixtures.py) on the tone corpus: the encoder
# cache's path (frozen; LoRA on the decoder only; prompt frames after the encoder), recorded as GOLDEN above.
WHISPER_RUNS = {"frozen-cached": {"mode": "frozen"},
                "lora-decoder-cached": {"mode": "lora", "lora_layers": 1, "lora_r": 4},
                "prompt-cached": {"mode": "prompt", "num_virtual_tokens": 4}}
WHISPER_GOLDEN = {
    "frozen-cached": [4.072512149810791, 3.9732437133789062, 3.998467445373535, 3.8736701011657715, 3.979473352432251],
    "lora-decoder-cached": [4.072512149810791, 3.963087558746338, 3.984241008758545, 3.8534352779388428,
                            3.968318998813629],
    "prompt-cached": [4.074985980987549, 3.974606513977051, 3.996843099594116, 3.8737432956695557, 3.980044722557068],
}


@pytest.mark.parametrize("run", list(WHISPER_RUNS))
def test_whisper_golden_loss(tiny_whisper_model, tone_data, tmp_path, run):
    out = tmp_path / run
    result = tunesuite.finetune("asr", str(tiny_whisper_model), str(tone_data), output_dir=str(out),
                                **{**SETTINGS, "per_device_train_batch_size": 4}, **WHISPER_RUNS[run])
    losses = [*step_losses(out), result["train_loss"]]
    if os.environ.get("GOLDEN_RECORD"):
        print(f"WHISPER_GOLDEN {run!r}: {losses!r},")
        return
    torch.testing.assert_close(torch.tensor(losses, dtype=torch.float64),
                               torch.tensor(WHISPER_GOLDEN[run], dtype=torch.float64), rtol=1e-4, atol=0)
