"""Fine-tune an audio classifier (wav2vec2 family). No arguments: the offline espeak-ng keyword-spotting demo.

    accelerate launch tasks/audio_classification.py --model facebook/wav2vec2-base --dataset data/keywords/ \
        --mode lora --output-dir runs/keywords
"""

import tunesuite

if __name__ == "__main__":
    tunesuite.run("audio-classification")  # by name: --help and --version need no torch
