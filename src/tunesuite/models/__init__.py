"""Models: a pretrained checkpoint loaded for a run, a finished run opened again (to predict or continue), and the
model families' facts that the modes read."""
