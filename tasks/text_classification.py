"""Fine-tune a text classifier (BERT family). No arguments: the offline MiniLM + fortunes demo.

    accelerate launch tasks/text_classification.py --model bert-base-uncased --dataset imdb \
        --mode lora --output-dir runs/imdb
"""

import tunesuite

if __name__ == "__main__":
    tunesuite.run("text-classification")  # by name: --help and --version need no torch
