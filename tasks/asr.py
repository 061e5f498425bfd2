"""Fine-tune a speech recogniser (wav2vec2 + CTC). No arguments: the offline espeak-ng transfer demo (~3 CPU-min).

    accelerate launch tasks/asr.py --model facebook/wav2vec2-base --dataset data/speech/ \
        --mode lora --output-dir runs/speech
"""

import tunesuite

if __name__ == "__main__":
    tunesuite.run("asr")  # by name: --help and --version need no torch
