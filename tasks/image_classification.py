"""Fine-tune an image classifier (ViT, ResNet). No arguments: the offline digits transfer demo.

    accelerate launch tasks/image_classification.py --model google/vit-base-patch16-224-in21k \
        --dataset cifar10 --image-column img --mode lora --output-dir runs/cifar10
"""

import tunesuite

if __name__ == "__main__":
    tunesuite.run("image-classification")  # by name: --help and --version need no torch
