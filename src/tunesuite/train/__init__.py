"""One run: the recipe (data -> model -> mode -> Trainer -> evaluate -> save), the Trainer subclass, checkpoints,
guards, the feature cache, progress, timing and the files a finished run writes."""
